//! Labelled counters and gauges with many series — the per-interface flow
//! metrics, thousands of series on a large fleet — rendered straight into
//! the text exposition format.
//!
//! The `prometheus` crate renders by gathering: every scrape copies each
//! series into protobuf messages (a string per label name and value), sorts
//! them and formats them again, which for 20,000 series costs more than a
//! scrape should (issue 12: `/metrics` with 1,000 interfaces in < 10 ms).
//! Here a series encodes its label set once, when it is created, and keeps
//! its value in an atomic; a scrape writes name, encoded labels and value
//! of each series into one buffer. The output is byte for byte what the
//! crate's `TextEncoder` writes: label names sorted, series sorted by their
//! label values in that order, values formatted as the crate's `f64`s are.

use std::fmt::Write as _;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use hashbrown::HashTable;

/// What a series' value is and how it is written.
pub trait Value: Default + Send + Sync {
    /// `counter` or `gauge`, as `# TYPE` says it.
    const TYPE: &'static str;
    fn write(&self, out: &mut String);
}

impl Value for AtomicU64 {
    const TYPE: &'static str = "counter";

    fn write(&self, out: &mut String) {
        let value = self.load(Ordering::Relaxed);
        // The crate keeps every value as an f64: integers past 2^53 are
        // written rounded, as it writes them.
        if value <= 1 << f64::MANTISSA_DIGITS {
            out.push_str(itoa::Buffer::new().format(value));
        } else {
            let _ = write!(out, "{}", value as f64);
        }
    }
}

impl Value for AtomicI64 {
    const TYPE: &'static str = "gauge";

    fn write(&self, out: &mut String) {
        let value = self.load(Ordering::Relaxed);
        if value.unsigned_abs() <= 1 << f64::MANTISSA_DIGITS {
            out.push_str(itoa::Buffer::new().format(value));
        } else {
            let _ = write!(out, "{}", value as f64);
        }
    }
}

/// One series of a [`CounterFamily`]; clones share the value.
#[derive(Clone)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    pub fn inc(&self) {
        self.inc_by(1);
    }

    pub fn inc_by(&self, by: u64) {
        self.0.fetch_add(by, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// One series of a [`GaugeFamily`]; clones share the value.
#[derive(Clone)]
pub struct Gauge(Arc<AtomicI64>);

impl Gauge {
    pub fn set(&self, value: i64) {
        self.0.store(value, Ordering::Relaxed);
    }

    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

pub type CounterFamily = Family<AtomicU64>;
pub type GaugeFamily = Family<AtomicI64>;

impl CounterFamily {
    /// The series of these label values (in the order of the label names
    /// given to [`Family::new`]), created at 0 when new.
    pub fn with_label_values(&self, values: &[&str]) -> Counter {
        Counter(self.series(values))
    }
}

impl CounterFamily {
    /// Adds `by` to the series of these label values if it exists (never
    /// creates one); whether it exists.
    pub fn inc_existing(&self, values: &[&str], by: u64) -> bool {
        self.existing(values, |value| {
            value.fetch_add(by, Ordering::Relaxed);
        })
    }
}

impl GaugeFamily {
    /// The series of these label values, created at 0 when new.
    pub fn with_label_values(&self, values: &[&str]) -> Gauge {
        Gauge(self.series(values))
    }
}

/// A metric with labels: its series, each with its label set encoded.
pub struct Family<V> {
    /// Full name, namespace included.
    name: String,
    /// `# HELP` and `# TYPE` lines, escaped as the text format wants.
    header: String,
    label_names: Vec<&'static str>,
    /// Indexes of `label_names` in the order of the names sorted: the
    /// order labels are written and series sorted in.
    written_order: Vec<usize>,
    table: RwLock<Table<V>>,
    hasher: foldhash::fast::FixedState,
}

struct Table<V> {
    /// Slots of series; `None` for one removed, reused by the next added.
    series: Vec<Option<Series<V>>>,
    vacant: Vec<u32>,
    /// Slot of each series by its label values.
    index: HashTable<u32>,
    /// Occupied slots in the order they are written; stale (unsorted, or
    /// holding removed slots) once a series is added or removed, and put
    /// in order again by the next scrape, not by every update.
    order: Vec<u32>,
    ordered: bool,
}

struct Series<V> {
    /// In the order of `label_names`.
    values: Box<[Box<str>]>,
    /// `{name="value",…}`, escaped.
    labels: Box<str>,
    value: Arc<V>,
}

impl<V: Value> Family<V> {
    /// `name` without the namespace; `label_names` at least one.
    pub fn new(namespace: &str, name: &str, help: &str, label_names: &[&'static str]) -> Self {
        assert!(!label_names.is_empty(), "{name}: a family has labels");
        let name = format!("{namespace}_{name}");
        let header = format!(
            "# HELP {name} {}\n# TYPE {name} {}\n",
            escape(help, false),
            V::TYPE
        );
        let mut written_order: Vec<usize> = (0..label_names.len()).collect();
        written_order.sort_by_key(|&index| label_names[index]);
        Family {
            name,
            header,
            label_names: label_names.to_vec(),
            written_order,
            table: RwLock::new(Table {
                series: Vec::new(),
                vacant: Vec::new(),
                index: HashTable::new(),
                order: Vec::new(),
                ordered: true,
            }),
            hasher: foldhash::fast::FixedState::default(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn hash(&self, values: &[impl AsRef<str>]) -> u64 {
        let mut hasher = self.hasher.build_hasher();
        for value in values {
            value.as_ref().hash(&mut hasher);
        }
        hasher.finish()
    }

    fn check_arity(&self, values: &[&str]) {
        assert_eq!(
            values.len(),
            self.label_names.len(),
            "{}: label values for {:?}",
            self.name,
            self.label_names
        );
    }

    /// Calls `with` on the value of the series of these label values, if it
    /// exists; whether it does.
    fn existing(&self, values: &[&str], with: impl FnOnce(&V)) -> bool {
        self.check_arity(values);
        let hash = self.hash(values);
        let table = self.table.read().unwrap_or_else(PoisonError::into_inner);
        match table.find(hash, values) {
            Some(slot) => {
                with(&table.occupied(slot).value);
                true
            }
            None => false,
        }
    }

    fn series(&self, values: &[&str]) -> Arc<V> {
        self.check_arity(values);
        let hash = self.hash(values);
        {
            let table = self.table.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(slot) = table.find(hash, values) {
                return Arc::clone(&table.occupied(slot).value);
            }
        }
        let mut table = self.table.write().unwrap_or_else(PoisonError::into_inner);
        let table = &mut *table;
        if let Some(slot) = table.find(hash, values) {
            return Arc::clone(&table.occupied(slot).value);
        }
        let series = Series {
            values: values.iter().map(|&value| value.into()).collect(),
            labels: self.encode_labels(values).into(),
            value: Arc::new(V::default()),
        };
        let value = Arc::clone(&series.value);
        let slot = match table.vacant.pop() {
            Some(slot) => {
                table.series[slot as usize] = Some(series);
                slot
            }
            None => {
                table.series.push(Some(series));
                u32::try_from(table.series.len() - 1).expect("fewer than 2^32 series")
            }
        };
        let Table { series, index, .. } = table;
        index.insert_unique(hash, slot, |&slot| {
            self.hash(&series[slot as usize].as_ref().expect("indexed").values[..])
        });
        table.ordered = false;
        value
    }

    /// Removes the series of these label values; whether it existed.
    pub fn remove_label_values(&self, values: &[&str]) -> bool {
        self.check_arity(values);
        let hash = self.hash(values);
        let mut table = self.table.write().unwrap_or_else(PoisonError::into_inner);
        let table = &mut *table;
        let Table {
            series,
            index,
            vacant,
            ordered,
            ..
        } = table;
        let found = index.find_entry(hash, |&slot| same_values(&series[slot as usize], values));
        match found {
            Ok(entry) => {
                let (slot, _) = entry.remove();
                series[slot as usize] = None;
                vacant.push(slot);
                *ordered = false;
                true
            }
            Err(_) => false,
        }
    }

    fn encode_labels(&self, values: &[&str]) -> String {
        let mut labels = String::from("{");
        for (position, &index) in self.written_order.iter().enumerate() {
            if position > 0 {
                labels.push(',');
            }
            labels.push_str(self.label_names[index]);
            labels.push_str("=\"");
            labels.push_str(&escape(values[index], true));
            labels.push('"');
        }
        labels.push('}');
        labels
    }

    /// The label values (in the order of the names given) and value of every series.
    pub fn snapshot(&self) -> Vec<(Vec<String>, i128)>
    where
        V: Snapshot,
    {
        let table = self.table.read().unwrap_or_else(PoisonError::into_inner);
        table
            .series
            .iter()
            .flatten()
            .map(|series| {
                let values = series
                    .values
                    .iter()
                    .map(|value| value.to_string())
                    .collect();
                (values, series.value.get())
            })
            .collect()
    }

    /// Appends the family in the text format; nothing when it has no series
    /// (as the crate prunes empty families).
    pub fn render_into(&self, out: &mut String) {
        {
            let table = self.table.read().unwrap_or_else(PoisonError::into_inner);
            if table.ordered {
                self.write_series(&table, out);
                return;
            }
        }
        let mut table = self.table.write().unwrap_or_else(PoisonError::into_inner);
        if !table.ordered {
            let Table { series, order, .. } = &mut *table;
            order.clear();
            order.extend(
                series
                    .iter()
                    .enumerate()
                    .filter(|(_, series)| series.is_some())
                    .map(|(slot, _)| slot as u32),
            );
            let values = |slot: u32| &series[slot as usize].as_ref().expect("occupied").values;
            order.sort_unstable_by(|&a, &b| {
                let (a, b) = (values(a), values(b));
                self.written_order
                    .iter()
                    .map(|&index| a[index].cmp(&b[index]))
                    .find(|ordering| ordering.is_ne())
                    .unwrap_or(std::cmp::Ordering::Equal)
            });
            table.ordered = true;
        }
        self.write_series(&table, out);
    }

    fn write_series(&self, table: &Table<V>, out: &mut String) {
        if table.order.is_empty() {
            return;
        }
        out.push_str(&self.header);
        for &slot in &table.order {
            let series = table.occupied(slot);
            out.push_str(&self.name);
            out.push_str(&series.labels);
            out.push(' ');
            series.value.write(out);
            out.push('\n');
        }
    }
}

/// A family as `Metrics::render` writes it, whatever its values.
pub trait Render {
    fn name(&self) -> &str;
    fn render_into(&self, out: &mut String);
}

impl<V: Value> Render for Family<V> {
    fn name(&self) -> &str {
        Family::name(self)
    }

    fn render_into(&self, out: &mut String) {
        Family::render_into(self, out);
    }
}

fn same_values<V>(series: &Option<Series<V>>, values: &[&str]) -> bool {
    series.as_ref().is_some_and(|series| {
        series
            .values
            .iter()
            .map(|value| &**value)
            .eq(values.iter().copied())
    })
}

impl<V> Table<V> {
    fn find(&self, hash: u64, values: &[&str]) -> Option<u32> {
        self.index
            .find(hash, |&slot| {
                same_values(&self.series[slot as usize], values)
            })
            .copied()
    }

    fn occupied(&self, slot: u32) -> &Series<V> {
        self.series[slot as usize]
            .as_ref()
            .expect("indexed slots are occupied")
    }
}

/// Reading a value for [`Family::snapshot`].
pub trait Snapshot {
    fn get(&self) -> i128;
}

impl Snapshot for AtomicU64 {
    fn get(&self) -> i128 {
        i128::from(self.load(Ordering::Relaxed))
    }
}

impl Snapshot for AtomicI64 {
    fn get(&self) -> i128 {
        i128::from(self.load(Ordering::Relaxed))
    }
}

/// The text format's escapes: backslash and newline, and in label values
/// the double quote.
fn escape(text: &str, in_label_value: bool) -> std::borrow::Cow<'_, str> {
    let special = |c: char| c == '\\' || c == '\n' || (in_label_value && c == '"');
    if !text.contains(special) {
        return text.into();
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if special(c) {
            escaped.extend(c.escape_default());
        } else {
            escaped.push(c);
        }
    }
    escaped.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::{Encoder, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

    fn crate_text(registry: &Registry) -> String {
        let mut buffer = Vec::new();
        TextEncoder::new()
            .encode(&registry.gather(), &mut buffer)
            .unwrap();
        String::from_utf8(buffer).unwrap()
    }

    const LABELS: [&str; 3] = ["interface_id", "verdict", "direction"];

    /// Label values that need escaping, share prefixes, and sort
    /// differently in declared and written order.
    fn label_sets() -> Vec<[&'static str; 3]> {
        vec![
            ["eni-b", "accepted", "ingress"],
            ["eni-a", "refused", "egress"],
            ["eni-a", "accepted", "egress"],
            ["eni-a\"quoted\"", "a\\b", "line\nbreak"],
            ["eni-", "", "ingress"],
            ["eni-a", "accepted", "ingress"],
        ]
    }

    #[test]
    fn counters_render_as_the_crate_renders_them() {
        let family = CounterFamily::new(
            "vpcflow",
            "bytes_total",
            "Help with \\ and\nnewline.",
            &LABELS,
        );
        let registry = Registry::new();
        let reference = IntCounterVec::new(
            Opts::new("bytes_total", "Help with \\ and\nnewline.").namespace("vpcflow"),
            &LABELS,
        )
        .unwrap();
        registry.register(Box::new(reference.clone())).unwrap();
        let mut out = String::new();
        family.render_into(&mut out);
        assert_eq!(out, "", "no series, no family");
        for (n, labels) in label_sets().iter().enumerate() {
            let by = [0, 1, 42, 9_007_199_254_740_993, u64::MAX / 3, 7][n];
            family.with_label_values(labels).inc_by(by);
            reference.with_label_values(labels).inc_by(by);
        }
        family.with_label_values(&label_sets()[0]).inc();
        reference.with_label_values(&label_sets()[0]).inc();
        family.render_into(&mut out);
        assert_eq!(out, crate_text(&registry));
        assert_eq!(family.with_label_values(&label_sets()[0]).get(), 1);
    }

    #[test]
    fn gauges_render_as_the_crate_renders_them_after_removals() {
        let family = GaugeFamily::new("vpcflow", "open_sessions", "Open.", &LABELS);
        let registry = Registry::new();
        let reference = IntGaugeVec::new(
            Opts::new("open_sessions", "Open.").namespace("vpcflow"),
            &LABELS,
        )
        .unwrap();
        registry.register(Box::new(reference.clone())).unwrap();
        for (n, labels) in label_sets().iter().enumerate() {
            let value = [-3, 0, 5, i64::MIN, i64::MAX, 1][n];
            family.with_label_values(labels).set(value);
            reference.with_label_values(labels).set(value);
        }
        let mut before = String::new();
        family.render_into(&mut before);
        assert_eq!(before, crate_text(&registry));
        for labels in [label_sets()[1], label_sets()[4]] {
            assert!(family.remove_label_values(&labels));
            reference.remove_label_values(&labels).unwrap();
        }
        assert!(!family.remove_label_values(&label_sets()[1]));
        // A removed slot is reused by the next series.
        family
            .with_label_values(&["eni-c", "unanswered", "egress"])
            .set(9);
        reference
            .with_label_values(&["eni-c", "unanswered", "egress"])
            .set(9);
        let mut after = String::new();
        family.render_into(&mut after);
        assert_eq!(after, crate_text(&registry));
        assert_eq!(family.snapshot().len(), 5);
    }
}
