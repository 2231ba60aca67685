//! The projection table: which function derives rows from each entry kind. The log is
//! handed one at open (as a store is handed its `Packing`), and applies it to every
//! draft a command returns, at the index and time the entry will carry, in the same
//! batch; `rebuild_projections` applies the same table to the stored entries. So what
//! the writer projects live is by construction what a rebuild derives, and the log
//! knows of entry kinds only that a table maps them.

use std::collections::HashMap;

use super::staging::Staging;

/// One entry as a projector sees it: the draft's fields and the envelope it will carry.
#[derive(Debug, Clone, Copy)]
pub struct Applied<'a> {
    pub kind: &'a str,
    pub system: Option<&'a str>,
    pub body: &'a serde_cbor::Value,
    pub index: u64,
    /// The entry's time (unix µs).
    pub time: u64,
    pub actor: &'a str,
}

/// Derive projection rows from one entry: read only the entry and earlier projections
/// (through `Staging`), write rows through it.
pub type Projector<E> = fn(&Applied<'_>, &mut Staging<'_>) -> Result<(), E>;

/// The entry kinds a module projects, and its projector for them.
pub struct Projects<E: 'static> {
    pub kinds: &'static [&'static str],
    pub projector: Projector<E>,
}

/// Every entry kind's projector. A kind no module projects changes no row.
pub struct Projections<E> {
    by_kind: HashMap<&'static str, Projector<E>>,
}

impl<E> Default for Projections<E> {
    fn default() -> Self {
        Self::none()
    }
}

impl<E> Projections<E> {
    /// A table that projects nothing (a log of opaque entries).
    pub fn none() -> Self {
        Self {
            by_kind: HashMap::new(),
        }
    }

    /// The table of these modules' declarations. Two modules claiming one kind is a
    /// programming error, refused when the table is built.
    pub fn of(modules: &[&[Projects<E>]]) -> Self {
        let mut by_kind = HashMap::new();
        for p in modules.iter().flat_map(|m| m.iter()) {
            for kind in p.kinds {
                let earlier = by_kind.insert(*kind, p.projector);
                assert!(earlier.is_none(), "two projectors declare {kind:?}");
            }
        }
        Self { by_kind }
    }

    /// Apply one entry to the projections.
    pub fn project(&self, entry: &Applied<'_>, s: &mut Staging<'_>) -> Result<(), E> {
        match self.by_kind.get(entry.kind) {
            Some(f) => f(entry, s),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Store;

    fn mark(e: &Applied<'_>, s: &mut Staging<'_>) -> Result<(), String> {
        s.put(e.kind.as_bytes().to_vec(), e.index.to_be_bytes().to_vec());
        Ok(())
    }

    fn refuse(_: &Applied<'_>, _: &mut Staging<'_>) -> Result<(), String> {
        Err("refused".into())
    }

    const MARKS: &[Projects<String>] = &[Projects {
        kinds: &["a.marked"],
        projector: mark,
    }];
    const REFUSES: &[Projects<String>] = &[Projects {
        kinds: &["b.refused"],
        projector: refuse,
    }];

    fn applied(kind: &str) -> Applied<'_> {
        Applied {
            kind,
            system: None,
            body: &serde_cbor::Value::Null,
            index: 7,
            time: 1,
            actor: "a",
        }
    }

    #[test]
    fn each_kind_goes_to_its_declared_projector_and_an_undeclared_one_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::storage::sled::SledStore::open(dir.path(), &Default::default()).unwrap();
        let table = Projections::of(&[MARKS, REFUSES]);
        let batch = crate::storage::Writes::new();
        let mut s = Staging::detached(&store as &dyn Store, &batch, 7, 1, "a");
        table.project(&applied("a.marked"), &mut s).unwrap();
        assert_eq!(
            s.get(b"a.marked").unwrap(),
            Some(7u64.to_be_bytes().to_vec())
        );
        assert_eq!(
            table.project(&applied("b.refused"), &mut s),
            Err("refused".into())
        );
        table.project(&applied("c.unknown"), &mut s).unwrap();
        assert_eq!(s.into_writes().len(), 1);
    }

    #[test]
    #[should_panic(expected = "two projectors declare \"a.marked\"")]
    fn two_modules_claiming_one_kind_is_refused() {
        let _ = Projections::of(&[MARKS, MARKS]);
    }
}
