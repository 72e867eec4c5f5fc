/** A grouped bar chart as a standalone SVG string: one panel per add mode, groups by concurrency, a bar per contender. */
export type ChartPanel = {
  title: string;
  groups: { label: string; bars: { name: string; value: number | null }[] }[];
};

const COLORS = ['#1b6ca8', '#e07b39', '#3a9e5f', '#8c6bb1', '#c44e52'];

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

function niceMax(v: number): number {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

export function barChartSvg(title: string, subtitle: string, panels: ChartPanel[]): string {
  const names = [...new Set(panels.flatMap((p) => p.groups.flatMap((g) => g.bars.map((b) => b.name))))];
  const panelW = 420;
  const panelH = 300;
  const left = 70;
  const top = 70;
  const width = left + panels.length * (panelW + 30) + 10;
  const height = top + panelH + 90;
  const max = niceMax(
    Math.max(0, ...panels.flatMap((p) => p.groups.flatMap((g) => g.bars.map((b) => b.value ?? 0)))),
  );
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    `<text x="${left}" y="24" font-size="16" font-weight="bold">${esc(title)}</text>`,
    `<text x="${left}" y="44" fill="#555">${esc(subtitle)}</text>`,
  );
  panels.forEach((panel, pi) => {
    const x0 = left + pi * (panelW + 30);
    const y = (v: number) => top + panelH - (v / max) * panelH;
    out.push(
      `<text x="${x0 + panelW / 2}" y="${top - 8}" text-anchor="middle" font-weight="bold">${esc(panel.title)}</text>`,
    );
    for (let i = 0; i <= 5; i++) {
      const v = (max / 5) * i;
      out.push(`<line x1="${x0}" x2="${x0 + panelW}" y1="${y(v)}" y2="${y(v)}" stroke="#ddd"/>`);
      if (pi === 0)
        out.push(
          `<text x="${x0 - 6}" y="${y(v) + 4}" text-anchor="end" fill="#555">${Math.round(v).toLocaleString('en-US')}</text>`,
        );
    }
    const groupW = panelW / Math.max(1, panel.groups.length);
    const barW = (groupW * 0.8) / Math.max(1, names.length);
    panel.groups.forEach((g, gi) => {
      const gx = x0 + gi * groupW + groupW * 0.1;
      g.bars.forEach((b) => {
        const ni = names.indexOf(b.name);
        const bx = gx + ni * barW;
        if (b.value === null) {
          out.push(
            `<text x="${bx + barW / 2}" y="${top + panelH - 4}" text-anchor="middle" fill="#999">–</text>`,
          );
          return;
        }
        out.push(
          `<rect x="${bx.toFixed(1)}" y="${y(b.value).toFixed(1)}" width="${(barW - 2).toFixed(1)}" height="${(top + panelH - y(b.value)).toFixed(1)}" fill="${COLORS[ni % COLORS.length]}"><title>${esc(`${b.name}, ${g.label}: ${Math.round(b.value)} jobs/s`)}</title></rect>`,
        );
      });
      out.push(
        `<text x="${gx + groupW * 0.4}" y="${top + panelH + 16}" text-anchor="middle">${esc(g.label)}</text>`,
      );
    });
    out.push(
      `<line x1="${x0}" x2="${x0 + panelW}" y1="${top + panelH}" y2="${top + panelH}" stroke="#333"/>`,
    );
  });
  out.push(
    `<text x="16" y="${top + panelH / 2}" transform="rotate(-90 16 ${top + panelH / 2})" text-anchor="middle" fill="#555">jobs/s (median)</text>`,
  );
  names.forEach((n, i) => {
    const lx = left + i * 130;
    const ly = top + panelH + 45;
    out.push(
      `<rect x="${lx}" y="${ly - 10}" width="12" height="12" fill="${COLORS[i % COLORS.length]}"/>`,
      `<text x="${lx + 18}" y="${ly}">${esc(n)}</text>`,
    );
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
