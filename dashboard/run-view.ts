import type { RunStatus } from '../shared/run/status.js';

/** Rows the live stream carries of each table; later pages are asked for (`/api/rows`). */
export const FIRST_PAGE_ROWS = 50;
/** The most rows one `/api/rows` answer holds. */
export const MAX_PAGE_ROWS = 200;

export type ProducerRow = RunStatus['producers']['list'][number];
export type ConsumerRow = RunStatus['consumers'][number];
export const TABLES = ['producers', 'consumers'] as const;
export type Table = (typeof TABLES)[number];

/** A slice of one table: rows `offset` to `offset + rows.length - 1` of `total`. */
export type RowsPage<T> = { offset: number; total: number; rows: T[] };

/**
 * A run's status for the live page: every count, but the producers and consumers as counts by state
 * and a first page of rows, so an update stays a few KB for a run of any size (a run of 10,000
 * processes made each full status 2 MB, pushed to every tab every poll).
 */
export type RunView = Omit<RunStatus, 'producers' | 'consumers'> & {
  producers: Omit<RunStatus['producers'], 'list'> & { page: RowsPage<ProducerRow> };
  consumers: { total: number; byState: Record<string, number>; page: RowsPage<ConsumerRow> };
};

/** The live page's view of `status` (see RunView). */
export function viewOf(status: RunStatus): RunView {
  const { list, ...producers } = status.producers;
  const byState: Record<string, number> = {};
  for (const c of status.consumers) byState[c.state] = (byState[c.state] ?? 0) + 1;
  return {
    ...status,
    producers: { ...producers, page: pageOf(list, 0, FIRST_PAGE_ROWS) },
    consumers: {
      total: status.consumers.length,
      byState,
      page: pageOf(status.consumers, 0, FIRST_PAGE_ROWS),
    },
  };
}

/** Rows `offset` to `offset + limit - 1` of `rows` (fewer at the end). */
export function pageOf<T>(rows: readonly T[], offset: number, limit: number): RowsPage<T> {
  return { offset, total: rows.length, rows: rows.slice(offset, offset + limit) };
}

/** One page of a run's producers or consumers. */
export function tablePage(
  status: RunStatus,
  table: Table,
  offset: number,
  limit: number,
): RowsPage<ProducerRow | ConsumerRow> {
  return table === 'producers'
    ? pageOf(status.producers.list, offset, limit)
    : pageOf(status.consumers, offset, limit);
}
