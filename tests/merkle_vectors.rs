//! RFC 9162 Merkle tree: the reference roots of DESIGN.md, the RFC's worked proof
//! examples, and property tests against a naive recursive reference.

use proptest::prelude::*;
use veritrail::log::merkle::*;

const LEAVES: [&str; 8] = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
];
const ROOTS: [&str; 8] = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

fn leaves() -> Vec<Hash> {
    LEAVES
        .iter()
        .map(|h| leaf_hash(&hex::decode(h).unwrap()))
        .collect()
}

/// MTH straight from the RFC's recursive definition.
fn naive_root(l: &[Hash]) -> Hash {
    match l.len() {
        0 => empty_root(),
        1 => l[0],
        n => {
            let k = split_point(n as u64) as usize;
            node_hash(&naive_root(&l[..k]), &naive_root(&l[k..]))
        }
    }
}

#[test]
fn reference_roots_for_sizes_1_to_8() {
    let l = leaves();
    let mut f = Frontier::new();
    for (n, want) in ROOTS.iter().enumerate() {
        let size = n as u64 + 1;
        let got = root(&mut MemoryTree { leaves: &l }, size).unwrap();
        assert_eq!(hex::encode(got), *want, "size {size}");
        f.push(l[n]);
        assert_eq!(hex::encode(f.root()), *want, "frontier at size {size}");
    }
    assert_eq!(
        hex::encode(empty_root()),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
}

#[test]
fn rfc_worked_examples() {
    // RFC 9162 §2.1.5: the tree of seven leaves d0..d6 with nodes a..l.
    let l = leaves();
    let (a, b, c, d, e, f) = (l[0], l[1], l[2], l[3], l[4], l[5]);
    let g = node_hash(&a, &b);
    let h = node_hash(&c, &d);
    let i = node_hash(&e, &f);
    let j = l[6];
    let k = node_hash(&g, &h);
    let ll = node_hash(&i, &j);
    let t = &mut MemoryTree { leaves: &l[..7] };
    assert_eq!(inclusion_proof(t, 0, 7).unwrap(), vec![b, h, ll]);
    assert_eq!(inclusion_proof(t, 3, 7).unwrap(), vec![c, g, ll]);
    assert_eq!(inclusion_proof(t, 4, 7).unwrap(), vec![f, j, k]);
    assert_eq!(inclusion_proof(t, 6, 7).unwrap(), vec![i, k]);
    assert_eq!(consistency_proof(t, 3, 7).unwrap(), vec![c, d, g, ll]);
    assert_eq!(consistency_proof(t, 4, 7).unwrap(), vec![ll]);
    assert_eq!(consistency_proof(t, 6, 7).unwrap(), vec![i, j, k]);
    let root7 = naive_root(&l[..7]);
    for (m, p) in [(3u64, vec![c, d, g, ll]), (4, vec![ll]), (6, vec![i, j, k])] {
        verify_consistency(m, 7, &naive_root(&l[..m as usize]), &root7, &p).unwrap();
    }
    for (idx, p) in [
        (0u64, vec![b, h, ll]),
        (3, vec![c, g, ll]),
        (4, vec![f, j, k]),
        (6, vec![i, k]),
    ] {
        verify_inclusion(idx, 7, &l[idx as usize], &p, &root7).unwrap();
    }
}

fn make_leaves(n: usize) -> Vec<Hash> {
    (0..n)
        .map(|i| leaf_hash(&(i as u64).to_be_bytes()))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn inclusion_proofs_verify_and_tampering_fails(size in 1u64..700, idx_seed in any::<u64>(), which in any::<usize>(), bit in 0u8..8) {
        let l = make_leaves(size as usize);
        let index = idx_seed % size;
        let r = naive_root(&l);
        let t = &mut MemoryTree { leaves: &l };
        prop_assert_eq!(root(t, size).unwrap(), r);
        let proof = inclusion_proof(t, index, size).unwrap();
        prop_assert!(verify_inclusion(index, size, &l[index as usize], &proof, &r).is_ok());
        // Any altered hash fails.
        if !proof.is_empty() {
            let mut bad = proof.clone();
            let w = which % bad.len();
            bad[w][0] ^= 1 << bit;
            prop_assert!(verify_inclusion(index, size, &l[index as usize], &bad, &r).is_err());
            let mut short = proof.clone();
            short.pop();
            prop_assert!(verify_inclusion(index, size, &l[index as usize], &short, &r).is_err());
        }
        let mut longer = proof.clone();
        longer.push([7; 32]);
        prop_assert!(verify_inclusion(index, size, &l[index as usize], &longer, &r).is_err());
        // A wrong index or size fails.
        if size > 1 {
            let other = (index + 1 + (idx_seed % (size - 1))) % size;
            prop_assert!(verify_inclusion(other, size, &l[index as usize], &proof, &r).is_err());
        }
        // Claiming another size: the proof does not lead to that tree's root.
        let mut grown = l.clone();
        grown.push(leaf_hash(b"one more"));
        prop_assert!(verify_inclusion(index, size + 1, &l[index as usize], &proof, &naive_root(&grown)).is_err());
        prop_assert!(verify_inclusion(size, size, &l[index as usize], &proof, &r).is_err());
    }

    #[test]
    fn consistency_proofs_verify_and_tampering_fails(new in 1u64..700, old_seed in any::<u64>(), which in any::<usize>(), bit in 0u8..8) {
        let l = make_leaves(new as usize);
        let old = 1 + old_seed % new;
        let (r_old, r_new) = (naive_root(&l[..old as usize]), naive_root(&l));
        let t = &mut MemoryTree { leaves: &l };
        let proof = consistency_proof(t, old, new).unwrap();
        prop_assert!(verify_consistency(old, new, &r_old, &r_new, &proof).is_ok());
        if !proof.is_empty() {
            let mut bad = proof.clone();
            let w = which % bad.len();
            bad[w][31] ^= 1 << bit;
            prop_assert!(verify_consistency(old, new, &r_old, &r_new, &bad).is_err());
        }
        if old < new {
            let mut grown = l.clone();
            grown.push(leaf_hash(b"one more"));
            prop_assert!(verify_consistency(old, new + 1, &r_old, &naive_root(&grown), &proof).is_err());
            prop_assert!(verify_consistency(old, new, &r_new, &r_new, &proof).is_err());
            if old > 1 {
                prop_assert!(verify_consistency(old - 1, new, &r_old, &r_new, &proof).is_err());
            }
        }
        prop_assert!(verify_consistency(new, old.min(new.saturating_sub(1)), &r_old, &r_new, &proof).is_err() || old == new);
    }
}

#[test]
fn tiles_serve_the_same_proofs_as_memory() {
    use veritrail::log::tiles::{TileBuilder, TileReader};
    let n = 70_000usize;
    let l = make_leaves(n);
    let mut store = std::collections::HashMap::new();
    let mut b = TileBuilder::new();
    for (i, h) in l.iter().enumerate() {
        b.push(*h);
        if i % 1000 == 999 || i == n - 1 {
            for (id, bytes) in b.take_dirty() {
                store.insert(id, bytes);
            }
        }
    }
    let mut reader = TileReader::new(|id| Ok::<_, ()>(store.get(&id).cloned()));
    let mem = &mut MemoryTree { leaves: &l };
    for (index, size) in [
        (0u64, 1u64),
        (5, 256),
        (255, 256),
        (256, 257),
        (65_535, 65_536),
        (65_536, 69_999),
        (69_999, 70_000),
        (1234, 70_000),
    ] {
        assert_eq!(
            inclusion_proof(&mut reader, index, size).unwrap(),
            inclusion_proof(mem, index, size).unwrap(),
            "{index}/{size}"
        );
        assert_eq!(
            consistency_proof(&mut reader, index.max(1), size).unwrap(),
            consistency_proof(mem, index.max(1), size).unwrap()
        );
        assert_eq!(
            root(&mut reader, size).unwrap(),
            naive_root(&l[..size as usize])
        );
    }
    // Reloading the right edge from the stored tiles continues identically.
    let reloaded =
        TileBuilder::load(n as u64, |id| Ok::<_, ()>(store.get(&id).cloned()), |_| ()).unwrap();
    let a: Vec<_> = reloaded
        .partial_tiles()
        .map(|(id, h)| (id, h.to_vec()))
        .collect();
    let c: Vec<_> = b.partial_tiles().map(|(id, h)| (id, h.to_vec())).collect();
    assert_eq!(a, c);
}
