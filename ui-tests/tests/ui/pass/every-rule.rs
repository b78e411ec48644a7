use durus_core::{per_key, BTree, MergeConflict, PRef, Persistent, PersistentDict};
use durus_core::persistent::merge::Merge;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

#[derive(Merge, Serialize, Deserialize, Clone, PartialEq, Default)]
struct Stats {
    #[merge(sum)]
    hits: u64,
    #[merge(max)]
    last: u64,
}

fn concat(ours: &String, stored: &String, _initial: &String) -> Result<String, MergeConflict> {
    Ok(format!("{ours}{stored}"))
}

#[derive(Persistent, Serialize, Deserialize, Clone, PartialEq, Default)]
#[persistent(class = "ui.Everything")]
struct Everything {
    #[merge(sum)]
    count: i32,
    #[merge(sum)]
    weight: f64,
    #[merge(union)]
    tags: BTreeSet<String>,
    #[merge(union)]
    seen: HashSet<u32>,
    #[merge(union)]
    scores: BTreeMap<String, i64>,
    #[merge(union)]
    index: HashMap<String, String>,
    #[merge(ours)]
    editor: String,
    #[merge(theirs)]
    server_note: String,
    #[merge(max)]
    high: i64,
    #[merge(min)]
    low: i64,
    #[merge(nested)]
    stats: Stats,
    #[merge(with = concat)]
    log: String,
    #[merge(sum(min = 0))]
    stock: u32,
    #[merge(sum(max = 100))]
    percent: i8,
    #[merge(sum(min = -5, max = 5))]
    drift: i64,
    #[merge(sum(min = 0.0, max = 1.5))]
    fraction: f64,
    #[merge(same)]
    archived: bool,
    #[merge(per_key(same))]
    flags: BTreeMap<String, bool>,
    #[merge(per_key(sum))]
    views: HashMap<String, u64>,
    #[merge(per_key(sum(min = 0)))]
    stock_by_item: BTreeMap<String, i64>,
    #[merge(per_key(sum(min = 0.0, max = 1.5)))]
    shares: BTreeMap<String, f64>,
    #[merge(per_key(nested))]
    stats_by_day: BTreeMap<u32, Stats>,
    #[merge(per_key(sum))]
    dict_views: PersistentDict<String, u64>,
    by_tree: BTree<String, u64, per_key::Sum<0, 1000>>,
    by_dict: PRef<PersistentDict<String, Stats, per_key::Nested>>,
    #[serde(skip)]
    cached: u64,
    title: String,
    child: Option<PRef<Plain>>,
}

#[derive(Persistent, Serialize, Deserialize)]
#[persistent(class = "ui.Plain", aliases = ["ui.OldPlain", "old::Plain"])]
struct Plain {
    name: String,
}

fn main() {
    assert!(<Everything as Persistent>::RESOLVABLE);
    assert!(!<Plain as Persistent>::RESOLVABLE);
    assert_eq!(<Everything as Persistent>::CLASS_NAME, "ui.Everything");
    assert_eq!(<Plain as Persistent>::CLASS_ALIASES, ["ui.OldPlain", "old::Plain"]);
    assert!(<Wrapper<u8> as Persistent>::CLASS_NAME.ends_with("::Wrapper"));
    assert!(<Wrapper<u8> as Persistent>::CLASS_ALIASES.is_empty());
}

#[derive(Persistent, Serialize, Deserialize)]
struct Wrapper<T> {
    value: T,
}

#[allow(dead_code)]
fn generic_types_are_persistent_when_serializable() {
    fn needs<P: Persistent>() {}
    needs::<Wrapper<String>>();
    needs::<Wrapper<Vec<u8>>>();
}
