//! The recipes of docs/SCHEMA.md, each run on a database written by the
//! previous version of the type (a struct `V1` and a struct `V2` under
//! the same class name, in this one test binary), plus the library's own
//! class names and the decode errors.

mod support;

use durus_core::error::EncodingError;
use durus_core::{schema, BTree, Connection, Error, FileStorage, Oid, PRef, Persistent, Storage};
use serde::{Deserialize, Deserializer, Serialize};
use std::path::Path;
use support::Scratch;

/// Opens `path`, runs `f` and commits.
fn with_db<R>(path: &Path, f: impl FnOnce(&Connection) -> durus_core::Result<R>) -> R {
    let conn = Connection::new(FileStorage::open(path).expect("open"));
    let r = f(&conn).expect("run");
    conn.commit().expect("commit");
    r
}

/// The class name stored in the record of `oid`.
fn stored_class(path: &Path, oid: Oid) -> String {
    let mut storage = FileStorage::open(path).expect("open");
    let record = storage.load(oid).expect("load");
    let view = durus_core::internals::record::unpack(&record).expect("unpack");
    durus_core::internals::encoding::class_name(oid, view.data).expect("class")
}

// ---------------------------------------------------------------------
// Adding a field

mod add {
    use super::*;

    #[derive(Persistent, Serialize, Deserialize, Default)]
    #[persistent(class = "shop.Product")]
    pub struct V1 {
        pub name: String,
    }

    #[derive(Persistent, Serialize, Deserialize, Default, Debug, PartialEq)]
    #[persistent(class = "shop.Product")]
    pub struct V2 {
        pub name: String,
        #[serde(default)]
        pub price_cents: u64,
    }

    #[derive(Persistent, Serialize, Deserialize, Default)]
    #[persistent(class = "shop.Product")]
    pub struct V2WithoutDefault {
        pub name: String,
        pub price_cents: u64,
    }
}

#[test]
fn adding_a_field_with_a_default_loads_old_records() {
    let dir = Scratch::new("add");
    let path = dir.path("db.durus");
    with_db(&path, |c| {
        c.root::<add::V1>()?.write()?.name = "kettle".into();
        Ok(())
    });
    with_db(&path, |c| {
        let p = c.root::<add::V2>()?;
        assert_eq!(p.read()?.price_cents, 0, "the default");
        p.write()?.price_cents = 2500;
        Ok(())
    });
    let p = with_db(&path, |c| Ok(c.root::<add::V2>()?.read()?.price_cents));
    assert_eq!(p, 2500);
}

#[test]
fn adding_a_field_without_a_default_is_an_error_naming_it() {
    let dir = Scratch::new("add-no-default");
    let path = dir.path("db.durus");
    with_db(&path, |c| {
        c.root::<add::V1>()?.write()?.name = "kettle".into();
        Ok(())
    });
    let conn = Connection::new(FileStorage::open(&path).expect("open"));
    let err = conn
        .root::<add::V2WithoutDefault>()
        .and_then(|r| r.read().map(|_| ()))
        .unwrap_err();
    match &err {
        Error::Encoding(EncodingError::State {
            oid, class, field, ..
        }) => {
            assert_eq!(*oid, Oid(0));
            assert_eq!(class, "shop.Product");
            assert_eq!(field.as_deref(), Some("price_cents"));
        }
        other => panic!("{other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("object 0 (shop.Product): field `price_cents`"),
        "{text}"
    );
    assert!(text.contains("#[serde(default)]"), "{text}");
}

// Adding a persistent field (a BTree) to a stored type: a migration pass
// writes each owner once, so the new tree is stored with it.

mod add_tree {
    use super::*;

    #[derive(Persistent, Serialize, Deserialize, Default)]
    #[persistent(class = "shop.Shop")]
    pub struct V1 {
        pub name: String,
    }

    #[derive(Persistent, Serialize, Deserialize, Default)]
    #[persistent(class = "shop.Shop")]
    pub struct V2 {
        pub name: String,
        #[serde(default)]
        pub customers: BTree<String, u64>,
    }
}

#[test]
fn adding_a_tree_field_then_writing_the_owner_stores_the_tree() {
    let dir = Scratch::new("add-tree");
    let path = dir.path("db.durus");
    with_db(&path, |c| {
        c.root::<add_tree::V1>()?.write()?.name = "corner shop".into();
        Ok(())
    });
    with_db(&path, |c| {
        let shop = c.root::<add_tree::V2>()?;
        // The migration pass: write the owner, so the tree it made on load
        // is stored with it.
        let customers = shop.write()?.customers.clone();
        customers.insert("ann".into(), 1)?;
        Ok(())
    });
    let n = with_db(&path, |c| {
        let shop = c.root::<add_tree::V2>()?;
        let customers = shop.read()?.customers.clone();
        customers.get("ann")
    });
    assert_eq!(n, Some(1));
}

// ---------------------------------------------------------------------
// Removing a field

mod remove {
    use super::*;

    #[derive(Persistent, Serialize, Deserialize, Default)]
    #[persistent(class = "shop.Product")]
    pub struct V1 {
        pub name: String,
        pub fax: String,
    }

    #[derive(Persistent, Serialize, Deserialize, Default)]
    #[persistent(class = "shop.Product")]
    pub struct V2 {
        pub name: String,
    }
}

#[test]
fn removing_a_field_keeps_its_data_until_a_pass_forgets_it() {
    let dir = Scratch::new("remove");
    let path = dir.path("db.durus");
    with_db(&path, |c| {
        let p = c.root::<remove::V1>()?;
        let mut p = p.write()?;
        p.name = "kettle".into();
        p.fax = "555-0100".into();
        Ok(())
    });
    // Version 2 writes the object: the removed field is written back, so
    // version 1, if still running, reads it as before.
    with_db(&path, |c| {
        let p = c.root::<remove::V2>()?;
        assert_eq!(schema::unknown_fields(&p), ["fax"]);
        p.write()?.name = "kettle, steel".into();
        Ok(())
    });
    let fax = with_db(&path, |c| Ok(c.root::<remove::V1>()?.read()?.fax.clone()));
    assert_eq!(fax, "555-0100");
    // Once no version 1 runs, a pass drops it for good.
    let forgotten = with_db(&path, |c| {
        schema::forget_unknown_fields(&c.root::<remove::V2>()?)
    });
    assert_eq!(forgotten, ["fax"]);
    let left = with_db(&path, |c| {
        Ok(schema::unknown_fields(&c.root::<remove::V2>()?))
    });
    assert!(left.is_empty());
    let conn = Connection::new(FileStorage::open(&path).expect("open"));
    let err = conn
        .root::<remove::V1>()
        .and_then(|p| p.read().map(|p| p.fax.clone()))
        .unwrap_err();
    assert!(
        err.to_string().contains("field `fax`"),
        "version 1 needs the field it lost: {err}"
    );
}

// ---------------------------------------------------------------------
// Renaming a field

mod rename {
    use super::*;

    #[derive(Persistent, Serialize, Deserialize, Default)]
    #[persistent(class = "shop.Product")]
    pub struct V1 {
        pub name: String,
        pub price: u64,
    }

    /// The Rust name changes; the stored name stays (safe while version 1 runs).
    #[derive(Persistent, Serialize, Deserialize, Default)]
    #[persistent(class = "shop.Product")]
    pub struct V2 {
        pub name: String,
        #[serde(rename = "price")]
        pub price_cents: u64,
    }

    /// The stored name changes too: reads the old name, writes the new one.
    #[derive(Persistent, Serialize, Deserialize, Default)]
    #[persistent(class = "shop.Product")]
    pub struct V3 {
        pub name: String,
        #[serde(alias = "price")]
        pub price_cents: u64,
    }
}

#[test]
fn renaming_a_field_in_rust_only_keeps_the_stored_name() {
    let dir = Scratch::new("rename");
    let path = dir.path("db.durus");
    with_db(&path, |c| {
        c.root::<rename::V1>()?.write()?.price = 250;
        Ok(())
    });
    with_db(&path, |c| {
        let p = c.root::<rename::V2>()?;
        assert_eq!(p.read()?.price_cents, 250);
        p.write()?.price_cents = 300;
        Ok(())
    });
    let price = with_db(&path, |c| Ok(c.root::<rename::V1>()?.read()?.price));
    assert_eq!(price, 300, "version 1 still reads it");
}

#[test]
fn renaming_a_stored_field_with_a_serde_alias() {
    let dir = Scratch::new("rename-alias");
    let path = dir.path("db.durus");
    with_db(&path, |c| {
        c.root::<rename::V1>()?.write()?.price = 250;
        Ok(())
    });
    with_db(&path, |c| {
        let p = c.root::<rename::V3>()?;
        assert_eq!(p.read()?.price_cents, 250);
        // serde lists an alias among the fields: the old key is known,
        // so it is not kept beside the new one.
        assert!(schema::unknown_fields(&p).is_empty());
        p.write()?.price_cents = 300;
        Ok(())
    });
    let price = with_db(&path, |c| Ok(c.root::<rename::V3>()?.read()?.price_cents));
    assert_eq!(price, 300);
}

// ---------------------------------------------------------------------
// Renaming or moving a type

mod rename_type {
    use super::*;

    #[derive(Persistent, Serialize, Deserialize, Default)]
    #[persistent(class = "shop.PurchaseOrder")]
    pub struct V1 {
        pub id: u64,
    }

    #[derive(Persistent, Serialize, Deserialize, Default)]
    #[persistent(class = "shop.Order", aliases = ["shop.PurchaseOrder"])]
    pub struct V2 {
        pub id: u64,
    }

    #[derive(Persistent, Serialize, Deserialize, Default)]
    #[persistent(class = "shop.Order")]
    pub struct V2WithoutAlias {
        pub id: u64,
    }
}

#[test]
fn renaming_a_type_with_an_alias_reads_the_old_name() {
    let dir = Scratch::new("rename-type");
    let path = dir.path("db.durus");
    with_db(&path, |c| {
        c.root::<rename_type::V1>()?.write()?.id = 7;
        Ok(())
    });
    // Without the alias the old records are another class.
    {
        let conn = Connection::new(FileStorage::open(&path).expect("open"));
        let err = conn
            .root::<rename_type::V2WithoutAlias>()
            .and_then(|r| r.read().map(|r| r.id))
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("object 0 is a shop.PurchaseOrder, not a shop.Order"),
            "{err}"
        );
    }
    let id = with_db(&path, |c| {
        let o = c.root::<rename_type::V2>()?;
        let id = o.read()?.id;
        o.write()?.id += 1;
        Ok(id)
    });
    assert_eq!(id, 7);
    assert_eq!(
        stored_class(&path, Oid(0)),
        "shop.Order",
        "written under the new name"
    );
}

// ---------------------------------------------------------------------
// Changing a field's type

mod retype {
    use super::*;

    #[derive(Persistent, Serialize, Deserialize, Default)]
    #[persistent(class = "shop.Product")]
    pub struct V1 {
        /// Comma-separated.
        pub tags: String,
        /// Euros.
        pub price: f64,
    }

    /// `tags` becomes a list and reads either form (`deserialize_with`);
    /// `price` moves to whole cents through a migration pass.
    #[derive(Persistent, Serialize, Deserialize, Default, Debug, PartialEq)]
    #[persistent(class = "shop.Product")]
    pub struct V2 {
        #[serde(deserialize_with = "list_or_text")]
        pub tags: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub price: Option<f64>,
        #[serde(default)]
        pub price_cents: u64,
    }

    /// After the pass: no `price` at all.
    #[derive(Persistent, Serialize, Deserialize, Default, Debug, PartialEq)]
    #[persistent(class = "shop.Product")]
    pub struct V3 {
        pub tags: Vec<String>,
        pub price_cents: u64,
    }

    fn list_or_text<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            List(Vec<String>),
            Text(String),
        }
        Ok(match Either::deserialize(d)? {
            Either::List(list) => list,
            Either::Text(text) => text
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_string)
                .collect(),
        })
    }

    #[derive(Persistent, Serialize, Deserialize, Default)]
    #[persistent(class = "shop.Catalog")]
    #[serde(bound = "")]
    pub struct Catalog<P: Persistent> {
        pub products: Vec<PRef<P>>,
    }
}

#[test]
fn changing_a_field_s_type_with_deserialize_with_and_a_migration_pass() {
    let dir = Scratch::new("retype");
    let path = dir.path("db.durus");
    with_db(&path, |c| {
        let catalog = c.root::<retype::Catalog<retype::V1>>()?;
        for (tags, price) in [("steel, kitchen", 25.5), ("", 3.0)] {
            catalog.write()?.products.push(PRef::new(retype::V1 {
                tags: tags.into(),
                price,
            }));
        }
        Ok(())
    });
    // The pass, in batches of one commit per product: each object of the
    // class is reached through the program's own index (here the catalog).
    {
        let conn = Connection::new(FileStorage::open(&path).expect("open"));
        let catalog = conn.root::<retype::Catalog<retype::V2>>().unwrap();
        let products = catalog.read().unwrap().products.clone();
        for p in products {
            conn.transaction(5, |_| {
                let mut p = p.write()?;
                if let Some(euros) = p.price.take() {
                    p.price_cents = (euros * 100.0).round() as u64;
                }
                Ok(())
            })
            .unwrap();
        }
    }
    let products = with_db(&path, |c| {
        let catalog = c.root::<retype::Catalog<retype::V3>>()?;
        let mut out = Vec::new();
        for p in catalog.read()?.products.iter() {
            assert!(schema::unknown_fields(p).is_empty());
            let p = p.read()?;
            out.push((p.tags.clone(), p.price_cents));
        }
        Ok(out)
    });
    assert_eq!(
        products,
        [
            (vec!["steel".to_string(), "kitchen".to_string()], 2550),
            (vec![], 300)
        ]
    );
}

#[test]
fn a_field_of_another_type_is_an_error_naming_it() {
    let dir = Scratch::new("retype-error");
    let path = dir.path("db.durus");
    with_db(&path, |c| {
        c.root::<retype::Catalog<retype::V1>>()?
            .write()?
            .products
            .push(PRef::new(retype::V1 {
                tags: "a".into(),
                price: 1.0,
            }));
        Ok(())
    });
    let conn = Connection::new(FileStorage::open(&path).expect("open"));
    let catalog = conn.root::<retype::Catalog<retype::V3>>().unwrap();
    let product = catalog.read().unwrap().products[0].clone();
    let err = product.read().map(|_| ()).unwrap_err().to_string();
    assert!(err.contains("(shop.Product): field `tags`"), "{err}");
    assert!(!err.contains("Semantic"), "{err}");
}

// ---------------------------------------------------------------------
// Shapes where unknown fields cannot be kept

mod shapes {
    use super::*;

    #[derive(Persistent, Serialize, Deserialize, Default)]
    #[persistent(class = "shop.Product")]
    pub struct V2 {
        pub name: String,
        pub weight_g: u32,
    }

    #[derive(Serialize, Deserialize, Default)]
    pub struct Name {
        pub name: String,
    }

    #[derive(Persistent, Serialize, Deserialize, Default)]
    #[persistent(class = "shop.Product")]
    pub struct Flattened {
        #[serde(flatten)]
        pub name: Name,
    }

    #[derive(Persistent, Serialize, Deserialize, Default)]
    #[persistent(class = "shop.Product")]
    #[serde(deny_unknown_fields)]
    pub struct Strict {
        pub name: String,
    }
}

#[test]
fn a_flattened_type_refuses_to_drop_fields_it_does_not_know() {
    let dir = Scratch::new("flatten");
    let path = dir.path("db.durus");
    with_db(&path, |c| {
        let p = c.root::<shapes::V2>()?;
        let mut p = p.write()?;
        p.name = "kettle".into();
        p.weight_g = 1234;
        Ok(())
    });
    let conn = Connection::new(FileStorage::open(&path).expect("open"));
    let p = conn.root::<shapes::Flattened>().unwrap();
    assert_eq!(p.read().unwrap().name.name, "kettle");
    p.write().unwrap().name.name = "kettle, steel".into();
    let err = conn.commit().unwrap_err();
    match &err {
        Error::Encoding(EncodingError::UnknownFields { class, fields, .. }) => {
            assert_eq!(class, "shop.Product");
            assert_eq!(fields, &["weight_g"]);
        }
        other => panic!("{other:?}"),
    }
    conn.abort().unwrap();
    drop(conn);
    let weight = with_db(&path, |c| Ok(c.root::<shapes::V2>()?.read()?.weight_g));
    assert_eq!(weight, 1234);
}

#[test]
fn a_type_that_denies_unknown_fields_says_which_when_loading() {
    let dir = Scratch::new("deny");
    let path = dir.path("db.durus");
    with_db(&path, |c| {
        c.root::<shapes::V2>()?.write()?.weight_g = 1;
        Ok(())
    });
    let conn = Connection::new(FileStorage::open(&path).expect("open"));
    let err = conn
        .root::<shapes::Strict>()
        .and_then(|p| p.read().map(|_| ()))
        .unwrap_err()
        .to_string();
    assert!(err.contains("(shop.Product): field `weight_g`"), "{err}");
    assert!(err.contains("denies unknown fields"), "{err}");
}

mod write_only {
    use super::*;

    /// `note` is written but never read back: a record's `note` is not a
    /// field to serde, yet the type writes one itself.
    #[derive(Persistent, Serialize, Deserialize, Default)]
    #[persistent(class = "shop.Product")]
    pub struct V2 {
        pub name: String,
        #[serde(skip_deserializing)]
        pub note: String,
    }

    #[derive(Persistent, Serialize, Deserialize, Default)]
    #[persistent(class = "shop.Product")]
    pub struct Raw {
        pub name: String,
        #[serde(default)]
        pub note: String,
    }
}

#[test]
fn a_key_the_type_writes_itself_is_not_kept_twice() {
    let dir = Scratch::new("write-only");
    let path = dir.path("db.durus");
    with_db(&path, |c| {
        c.root::<write_only::Raw>()?.write()?.note = "old".into();
        Ok(())
    });
    for round in 0..3 {
        with_db(&path, |c| {
            let p = c.root::<write_only::V2>()?;
            assert_eq!(schema::unknown_fields(&p), ["note"], "round {round}");
            p.write()?.note = format!("new {round}");
            Ok(())
        });
    }
    let note = with_db(&path, |c| {
        Ok(c.root::<write_only::Raw>()?.read()?.note.clone())
    });
    assert_eq!(note, "new 2");
}

// ---------------------------------------------------------------------
// The library's own class names never follow its module paths.

#[test]
fn the_library_s_stored_types_have_fixed_class_names() {
    use durus_core::collections::{
        BNode, BTreeState, PersistentDict, PersistentList, PersistentSet,
    };
    assert_eq!(
        <BTreeState<u64, u64> as Persistent>::CLASS_NAME,
        "durus_core::collections::BTree"
    );
    assert_eq!(
        <BNode<u64, u64> as Persistent>::CLASS_NAME,
        "durus_core::collections::BNode"
    );
    assert_eq!(
        <PersistentDict<u64, u64> as Persistent>::CLASS_NAME,
        "durus_core::collections::PersistentDict"
    );
    assert_eq!(
        <PersistentList<u64> as Persistent>::CLASS_NAME,
        "durus_core::collections::PersistentList"
    );
    assert_eq!(
        <PersistentSet<u64> as Persistent>::CLASS_NAME,
        "durus_core::collections::PersistentSet"
    );
}
