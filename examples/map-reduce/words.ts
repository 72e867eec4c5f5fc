// words.ts: counting words, the same way in the jobs and in the single-process check.

export type Counts = Record<string, number>;

export function countWords(text: string, into: Counts = {}): Counts {
  for (const word of text.toLowerCase().match(/[a-z']+/g) ?? []) into[word] = (into[word] ?? 0) + 1;
  return into;
}

export function mergeCounts(into: Counts, more: Counts): Counts {
  for (const [word, n] of Object.entries(more)) into[word] = (into[word] ?? 0) + n;
  return into;
}

/** The `n` most frequent words, ties broken alphabetically so every count agrees on the order. */
export function topWords(counts: Counts, n: number): [word: string, count: number][] {
  return Object.entries(counts)
    .sort(([a, x], [b, y]) => y - x || (a < b ? -1 : a > b ? 1 : 0))
    .slice(0, n);
}

/** A corpus of `lines` lines drawn from a skewed vocabulary, the same for the same seed. */
export function makeCorpus(lines: number, seed = 1): string {
  const vocabulary = (
    'the of and to in a is that for it as was with be by on not he this are or his from at which ' +
    'but have an they you were her she there been one all we their has would when if so no what ' +
    'queue job run join producer consumer redis worker retry shard callback lease heartbeat'
  ).split(' ');
  let s = seed >>> 0;
  const random = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const out: string[] = [];
  for (let i = 0; i < lines; i++) {
    const words: string[] = [];
    for (let w = 0; w < 12; w++) words.push(vocabulary[Math.floor(vocabulary.length * random() ** 2)]!);
    out.push(words.join(' ') + '.');
  }
  return out.join('\n') + '\n';
}
