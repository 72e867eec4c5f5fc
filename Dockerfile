# One image for every role; compose (or you) picks the role with the command:
#   node dist/producers/main.js | node dist/consumers/main.js | node dist/dashboard/main.js
# Your own job types: mount them under /app (e.g. -v "$PWD/jobs:/app/jobs:ro") or COPY them in an
# image built FROM this one, and set JOB_MODULES=/app/jobs/resize.js; inside /app, `import ... from
# 'conveyor'` resolves to this package (docs/package.md).
ARG NODE_IMAGE=node:20-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json index.ts ./
COPY lib ./lib
COPY cli ./cli
COPY shared ./shared
COPY producers ./producers
COPY consumers ./consumers
COPY dashboard ./dashboard
COPY scripts ./scripts
RUN npm run build && npm prune --omit=dev --no-audit --no-fund

FROM ${NODE_IMAGE} AS runtime
# tini as PID 1 forwards SIGTERM to node and reaps zombies.
RUN apt-get update \
  && apt-get install -y --no-install-recommends tini \
  && rm -rf /var/lib/apt/lists/*
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
# The dashboard serves its page from dashboard/public (not compiled, so copied as is).
COPY dashboard/public ./dashboard/public
USER node
# 9464: /metrics of a producer or consumer; 3000: the dashboard.
EXPOSE 9464 3000
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["node", "dist/consumers/main.js"]
