/** Reading `node --cpu-prof` profiles: self time by where the code lives and by function. */
import { basename } from 'node:path';

export type CallFrame = { functionName: string; url: string; lineNumber: number };
export type ProfileNode = { id: number; callFrame: CallFrame };
export type Profile = { nodes: ProfileNode[]; samples: number[]; timeDeltas: number[] };

/** Where a frame's code lives: a package, this project's folder, Node itself, or V8's own work. */
export function placeOf(frame: CallFrame): string {
  const { url, functionName } = frame;
  if (!url) {
    if (functionName === '(idle)') return '(idle)';
    if (functionName === '(garbage collector)') return '(gc)';
    if (functionName === '(program)') return '(program)';
    return '(native)';
  }
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url);
  if (pkg) return pkg[1]!;
  if (url.startsWith('node:')) return 'node';
  const own = /\/(shared|consumers|producers|dashboard|lib|bench)\/[^/]+$/.exec(url);
  return own ? `conveyor ${own[1]}/` : 'other';
}

export type Summary = {
  file: string;
  /** Sampled time that was not idle, in ms. */
  busyMs: number;
  byPlace: { place: string; ms: number }[];
  byFunction: { fn: string; place: string; ms: number }[];
};

/** `afterMs`: samples in the profile's first milliseconds are left out (a process's start-up). */
export function summarise(file: string, profile: Profile, afterMs = 0): Summary {
  const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  let at = 0;
  profile.samples.forEach((id, i) => {
    const us = profile.timeDeltas[i] ?? 0;
    at += us;
    if (at > afterMs * 1000) selfUs.set(id, (selfUs.get(id) ?? 0) + us);
  });
  const places = new Map<string, number>();
  const fns = new Map<string, { place: string; us: number }>();
  let busy = 0;
  for (const [id, us] of selfUs) {
    const frame = nodes.get(id)!.callFrame;
    const place = placeOf(frame);
    if (place === '(idle)') continue;
    busy += us;
    places.set(place, (places.get(place) ?? 0) + us);
    const key = `${frame.functionName || '(anonymous)'} ${basename(frame.url)}:${frame.lineNumber + 1}`;
    const f = fns.get(key) ?? { place, us: 0 };
    f.us += us;
    fns.set(key, f);
  }
  const ms = (us: number) => Math.round(us / 100) / 10;
  return {
    file,
    busyMs: ms(busy),
    byPlace: [...places].map(([place, us]) => ({ place, ms: ms(us) })).sort((a, b) => b.ms - a.ms),
    byFunction: [...fns]
      .map(([fn, { place, us }]) => ({ fn, place, ms: ms(us) }))
      .sort((a, b) => b.ms - a.ms),
  };
}
