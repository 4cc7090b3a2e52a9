import type { Metric, Registry } from "prom-client";

/**
 * Metric families recorded on the request path without prom-client's per-call work: each series is a cell
 * the caller resolves once per label set (and keeps), so recording is a field increment or a bucket
 * search; no label object is hashed, validated or allocated per call. prom-client still owns the registry,
 * the HELP/TYPE lines and the text format: it reads the cells through `get()` at each scrape, as it reads
 * its own metrics (bench/RESULTS.md, "Metrics: what they cost per request").
 */

type Labels = Readonly<Record<string, string>>;

/** A sample as prom-client's registry formats it: `metricName` (default: the family's name), labels, value. */
interface Sample {
  readonly labels: Readonly<Record<string, string | number>>;
  readonly value: number;
  readonly metricName?: string;
}

/** What prom-client's registry reads from a metric at each scrape. */
interface Collected {
  readonly name: string;
  readonly help: string;
  readonly type: "counter" | "histogram";
  readonly aggregator: "sum";
  readonly values: readonly Sample[];
}

/** One counter series. */
export class CounterCell {
  value = 0;
  constructor(readonly labels: Labels) {}
  inc(by = 1): void {
    this.value += by;
  }
}

/** One histogram series: a count per bucket (not cumulative; the last slot is above every bound) and the sum. */
export class HistogramCell {
  readonly counts: Float64Array;
  sum = 0;
  constructor(
    readonly labels: Labels,
    private readonly bounds: readonly number[],
  ) {
    this.counts = new Float64Array(bounds.length + 1);
  }
  observe(value: number): void {
    const { bounds } = this;
    let i = 0;
    // `le` buckets: a value equal to a bound belongs to that bound's bucket, as prom-client counts it.
    while (i < bounds.length && value > (bounds[i] as number)) i++;
    this.counts[i] = (this.counts[i] as number) + 1;
    this.sum += value;
  }
}

/** Fields prom-client's registry reads from a metric: name, help, type, get() and reset(). */
abstract class Family<C> {
  protected readonly cells: C[] = [];
  readonly aggregator = "sum";
  abstract readonly type: "counter" | "histogram";
  constructor(
    readonly name: string,
    readonly help: string,
    registry: Registry,
  ) {
    registry.registerMetric(this as unknown as Metric);
  }
  abstract get(): Collected;
  abstract reset(): void;
}

/** A counter whose series are {@link CounterCell}s; a series appears at its first `cell()`, at 0. */
export class CounterFamily extends Family<CounterCell> {
  readonly type = "counter";
  /** A new series (call once per label set and keep it). */
  cell(labels: Labels): CounterCell {
    const cell = new CounterCell(labels);
    this.cells.push(cell);
    return cell;
  }
  get(): Collected {
    return {
      name: this.name,
      help: this.help,
      type: this.type,
      aggregator: this.aggregator,
      values: this.cells.map((cell) => ({ labels: cell.labels, value: cell.value })),
    };
  }
  reset(): void {
    for (const cell of this.cells) cell.value = 0;
  }
}

/** A histogram whose series are {@link HistogramCell}s with the family's bucket bounds. */
export class HistogramFamily extends Family<HistogramCell> {
  readonly type = "histogram";
  constructor(
    name: string,
    help: string,
    registry: Registry,
    private readonly bounds: readonly number[],
  ) {
    super(name, help, registry);
  }
  /** A new series (call once per label set and keep it). */
  cell(labels: Labels): HistogramCell {
    const cell = new HistogramCell(labels, this.bounds);
    this.cells.push(cell);
    return cell;
  }
  get(): Collected {
    const values: Sample[] = [];
    for (const cell of this.cells) {
      let cumulative = 0;
      for (let i = 0; i <= this.bounds.length; i++) {
        cumulative += cell.counts[i] as number;
        const le = i < this.bounds.length ? (this.bounds[i] as number) : "+Inf";
        values.push({ labels: { ...cell.labels, le }, value: cumulative, metricName: `${this.name}_bucket` });
      }
      values.push({ labels: cell.labels, value: cell.sum, metricName: `${this.name}_sum` });
      values.push({ labels: cell.labels, value: cumulative, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }
  reset(): void {
    for (const cell of this.cells) {
      cell.counts.fill(0);
      cell.sum = 0;
    }
  }
}
