import { loadConsumerConfig } from '../../consumers/config.js';
import { loadDashboardConfig } from '../../dashboard/config.js';
import { loadProducerConfig, type ProducerConfig } from '../../producers/config.js';
import { bool, int, name, parseEnv, type Env } from '../../shared/config.js';

export type DemoConfig = ReturnType<typeof loadDemoConfig>;

/** The demo's own settings; throws ConfigError naming the variable that is wrong. */
export function loadDemoConfig(env: Env) {
  return parseEnv(
    {
      PRODUCERS: int(3, 0, 1_000),
      CONSUMERS: int(2, 0, 1_000),
      RUN_ID: name(`demo-${new Date().toISOString().replace(/[-:T]/g, '').slice(0, 14)}`),
      CHILD_LOG_LEVEL: name('warn'),
      DASHBOARD_PORT: int(3000, 0, 65_535),
      DEMO_DASHBOARD: bool(true),
      DEMO_KEEP_DASHBOARD: bool(false),
      DEMO_CLUSTER: int(0, 0, 16),
    },
    env,
  );
}

/** What every child gets: the demo's environment, pointed at the demo's Redis and run. */
export function childEnvOf(
  env: Env,
  demo: DemoConfig,
  redis: { url: string; shards: string | undefined },
): Env {
  return {
    ...env,
    REDIS_URL: redis.url,
    ...(redis.shards === undefined ? {} : { SHARDS: redis.shards }),
    RUN_ID: demo.RUN_ID,
    PRODUCERS: String(demo.PRODUCERS),
    LOG_LEVEL: demo.CHILD_LOG_LEVEL,
  };
}

/**
 * Parses the children's configuration here, once, so a bad value fails the demo rather than every
 * child (throws ConfigError). Returns the producers' configuration, which the demo uses too.
 */
export function checkChildConfigs(childEnv: Env, withDashboard: boolean): ProducerConfig {
  const producerConfig = loadProducerConfig(childEnv);
  loadConsumerConfig(childEnv);
  if (withDashboard) loadDashboardConfig(childEnv);
  return producerConfig;
}
