//! RFC 9162 §2.1 Merkle tree hashing, proofs and their verifiers.
//!
//! Proof generation is written against [`NodeSource`], a lookup of *complete*
//! subtree hashes, so that the same code serves an in-memory tree in tests and
//! the tile store on disk: a proof touches O(log n) complete subtrees whatever
//! the size of the log, and never rebuilds the tree.

use sha2::{Digest, Sha256};

/// A SHA-256 digest: leaf hashes, node hashes and roots.
pub type Hash = [u8; 32];

/// `SHA-256(0x00 ‖ data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// `SHA-256(0x01 ‖ left ‖ right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of the empty tree, `SHA-256("")`.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The largest power of two strictly smaller than `n` (`n >= 2`): where RFC 9162 splits a tree.
pub fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// A lookup of complete subtree hashes. Node `(level, index)` is the root of the
/// perfect subtree over leaves `[index << level, (index + 1) << level)`.
pub trait NodeSource {
    type Error;
    fn node(&mut self, level: u8, index: u64) -> Result<Hash, Self::Error>;
}

/// The hash of the (possibly imperfect) subtree over leaves `[start, start + len)`,
/// where `start` is aligned as RFC 9162's recursive split makes it.
pub fn subtree_root<S: NodeSource>(src: &mut S, start: u64, len: u64) -> Result<Hash, S::Error> {
    debug_assert!(len > 0);
    if len.is_power_of_two() && start % len == 0 {
        let level = len.trailing_zeros() as u8;
        return src.node(level, start >> level);
    }
    let k = split_point(len);
    let left = subtree_root(src, start, k)?;
    let right = subtree_root(src, start + k, len - k)?;
    Ok(node_hash(&left, &right))
}

/// The root hash of the tree of the first `size` leaves.
pub fn root<S: NodeSource>(src: &mut S, size: u64) -> Result<Hash, S::Error> {
    if size == 0 {
        Ok(empty_root())
    } else {
        subtree_root(src, 0, size)
    }
}

/// RFC 9162 §2.1.3.1 `PATH(m, D[n])`: the inclusion proof of leaf `index` in the tree of `size` leaves.
/// The caller guarantees `index < size`.
pub fn inclusion_proof<S: NodeSource>(
    src: &mut S,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, S::Error> {
    debug_assert!(index < size);
    let mut out = Vec::with_capacity(64 - size.leading_zeros() as usize);
    path(src, index, 0, size, &mut out)?;
    Ok(out)
}

fn path<S: NodeSource>(
    src: &mut S,
    m: u64,
    start: u64,
    n: u64,
    out: &mut Vec<Hash>,
) -> Result<(), S::Error> {
    if n <= 1 {
        return Ok(());
    }
    let k = split_point(n);
    if m < k {
        path(src, m, start, k, out)?;
        out.push(subtree_root(src, start + k, n - k)?);
    } else {
        path(src, m - k, start + k, n - k, out)?;
        out.push(subtree_root(src, start, k)?);
    }
    Ok(())
}

/// Inclusion proofs of many leaves in one tree, sharing the roots of the imperfect
/// subtrees on the tree's right edge: every proof needs some of them, and each is a
/// chain of hashes, so a batch's receipts hashed them again for every proof.
pub struct Proofs {
    size: u64,
    edge: std::collections::HashMap<(u64, u64), Hash>,
}

impl Proofs {
    /// Proofs against the tree of `size` leaves.
    pub fn new(size: u64) -> Self {
        Self {
            size,
            edge: Default::default(),
        }
    }

    /// The inclusion proof of leaf `index` (`index < size`), as [`inclusion_proof`].
    pub fn of<S: NodeSource>(&mut self, src: &mut S, index: u64) -> Result<Vec<Hash>, S::Error> {
        debug_assert!(index < self.size);
        let mut out = Vec::with_capacity(64 - self.size.leading_zeros() as usize);
        let (mut m, mut start, mut n) = (index, 0, self.size);
        // `path` unrolled: from the root down, the sibling of each step, pushed in reverse.
        let mut siblings = Vec::with_capacity(out.capacity());
        while n > 1 {
            let k = split_point(n);
            if m < k {
                siblings.push((start + k, n - k));
                n = k;
            } else {
                siblings.push((start, k));
                m -= k;
                start += k;
                n -= k;
            }
        }
        for &(start, len) in siblings.iter().rev() {
            out.push(self.root(src, start, len)?);
        }
        Ok(out)
    }

    fn root<S: NodeSource>(&mut self, src: &mut S, start: u64, len: u64) -> Result<Hash, S::Error> {
        if len.is_power_of_two() && start % len == 0 {
            let level = len.trailing_zeros() as u8;
            return src.node(level, start >> level);
        }
        if let Some(h) = self.edge.get(&(start, len)) {
            return Ok(*h);
        }
        let k = split_point(len);
        let left = self.root(src, start, k)?;
        let right = self.root(src, start + k, len - k)?;
        let h = node_hash(&left, &right);
        self.edge.insert((start, len), h);
        Ok(h)
    }
}

/// RFC 9162 §2.1.4.1 `PROOF(m, D[n])`: the consistency proof from the tree of `old`
/// leaves to the tree of `new` leaves. Empty when `old == 0` or `old == new`.
/// The caller guarantees `old <= new`.
pub fn consistency_proof<S: NodeSource>(
    src: &mut S,
    old: u64,
    new: u64,
) -> Result<Vec<Hash>, S::Error> {
    debug_assert!(old <= new);
    let mut out = Vec::new();
    if old == 0 || old == new {
        return Ok(out);
    }
    subproof(src, old, 0, new, true, &mut out)?;
    Ok(out)
}

fn subproof<S: NodeSource>(
    src: &mut S,
    m: u64,
    start: u64,
    n: u64,
    complete: bool,
    out: &mut Vec<Hash>,
) -> Result<(), S::Error> {
    if m == n {
        if !complete {
            out.push(subtree_root(src, start, n)?);
        }
        return Ok(());
    }
    let k = split_point(n);
    if m <= k {
        subproof(src, m, start, k, complete, out)?;
        out.push(subtree_root(src, start + k, n - k)?);
    } else {
        subproof(src, m - k, start + k, n - k, false, out)?;
        out.push(subtree_root(src, start, k)?);
    }
    Ok(())
}

/// Why a proof did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("leaf index {index} is not below tree size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("proof has the wrong number of hashes")]
    WrongLength,
    #[error("old tree size {old} is larger than new tree size {new}")]
    SizesOutOfOrder { old: u64, new: u64 },
    #[error("recomputed root does not match")]
    RootMismatch,
}

/// RFC 9162 §2.1.3.2: check that `leaf` is leaf `index` of the tree of `size` leaves with root `root`.
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if snode == 0 {
            return Err(ProofError::WrongLength);
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::WrongLength);
    }
    if &r != root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// RFC 9162 §2.1.4.2: check that the tree of `old` leaves with root `old_root` is a
/// prefix of the tree of `new` leaves with root `new_root`.
pub fn verify_consistency(
    old: u64,
    new: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if old > new {
        return Err(ProofError::SizesOutOfOrder { old, new });
    }
    if old == new {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength);
        }
        return if old_root == new_root {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    if old == 0 {
        // Every tree extends the empty tree; RFC 9162 has no proof for it.
        return if proof.is_empty() && old_root == &empty_root() {
            Ok(())
        } else {
            Err(ProofError::WrongLength)
        };
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let Some((first, rest)) = path.split_first() else {
        return Err(ProofError::WrongLength);
    };
    let (mut fnode, mut snode) = (old - 1, new - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if snode == 0 {
            return Err(ProofError::WrongLength);
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::WrongLength);
    }
    if &fr != old_root || &sr != new_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// The right edge of the tree of `size` leaves: its perfect subtrees, largest first
/// (level, hash), read from `src`.
pub fn right_edge<S: NodeSource>(src: &mut S, size: u64) -> Result<Vec<(u8, Hash)>, S::Error> {
    let mut out = Vec::with_capacity(size.count_ones() as usize);
    let mut start = 0u64;
    for level in (0..64u8).rev() {
        let len = 1u64 << level;
        if size & len != 0 {
            out.push((level, src.node(level, start >> level)?));
            start += len;
        }
    }
    Ok(out)
}

/// The right edge of a growing tree: the roots of the perfect subtrees that make up
/// its leaves, largest first. Enough to compute the root at the current size in
/// O(log n) memory; used by the offline verifier and by the monitor.
#[derive(Debug, Clone, Default)]
pub struct Frontier {
    size: u64,
    // (level, hash), strictly decreasing levels.
    nodes: Vec<(u8, Hash)>,
}

impl Frontier {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The perfect subtrees that make up the tree, largest first: `(level, hash)`.
    pub fn nodes(&self) -> &[(u8, Hash)] {
        &self.nodes
    }

    /// Rebuild from [`Frontier::nodes`]; `None` unless the levels strictly decrease.
    pub fn from_nodes(nodes: Vec<(u8, Hash)>) -> Option<Self> {
        if nodes.windows(2).any(|w| w[0].0 <= w[1].0) || nodes.iter().any(|(l, _)| *l > 63) {
            return None;
        }
        let size = nodes.iter().map(|(l, _)| 1u64 << l).sum();
        Some(Self { size, nodes })
    }

    pub fn push(&mut self, leaf: Hash) {
        let mut cur = (0u8, leaf);
        while let Some(&(level, h)) = self.nodes.last() {
            if level != cur.0 {
                break;
            }
            self.nodes.pop();
            cur = (level + 1, node_hash(&h, &cur.1));
        }
        self.nodes.push(cur);
        self.size += 1;
    }

    /// Append a whole perfect subtree of `2^level` leaves. Valid only while levels keep
    /// decreasing, as when rebuilding the frontier of a size from its binary digits.
    pub fn push_subtree(&mut self, level: u8, hash: Hash) {
        debug_assert!(self.nodes.last().is_none_or(|(l, _)| *l > level));
        self.nodes.push((level, hash));
        self.size += 1u64 << level;
    }

    pub fn root(&self) -> Hash {
        let mut it = self.nodes.iter().rev();
        let Some(&(_, mut r)) = it.next() else {
            return empty_root();
        };
        for (_, h) in it {
            r = node_hash(h, &r);
        }
        r
    }
}

/// A [`NodeSource`] over leaf hashes held in memory; for tests, bundles and the verifier.
pub struct MemoryTree<'a> {
    pub leaves: &'a [Hash],
}

impl NodeSource for MemoryTree<'_> {
    type Error = std::convert::Infallible;
    fn node(&mut self, level: u8, index: u64) -> Result<Hash, Self::Error> {
        let start = (index << level) as usize;
        Ok(perfect_root(&self.leaves[start..start + (1usize << level)]))
    }
}

/// The root of a perfect tree over `hashes` (a power-of-two count of them).
pub fn perfect_root(hashes: &[Hash]) -> Hash {
    debug_assert!(hashes.len().is_power_of_two());
    if hashes.len() == 1 {
        return hashes[0];
    }
    let mut level: Vec<Hash> = hashes.chunks(2).map(|p| node_hash(&p[0], &p[1])).collect();
    while level.len() > 1 {
        level = level.chunks(2).map(|p| node_hash(&p[0], &p[1])).collect();
    }
    level[0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_proofs_are_the_single_ones() {
        let leaves: Vec<Hash> = (0u32..300).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        for size in [1u64, 2, 3, 7, 8, 9, 100, 255, 256, 257, 300] {
            let mut batch = Proofs::new(size);
            let mut t = MemoryTree {
                leaves: &leaves[..size as usize],
            };
            // Twice over, so the second pass reads the shared roots.
            for index in (0..size).chain(0..size) {
                let want = inclusion_proof(&mut t, index, size).unwrap();
                assert_eq!(
                    batch.of(&mut t, index).unwrap(),
                    want,
                    "size {size}, leaf {index}"
                );
                let root = root(&mut t, size).unwrap();
                verify_inclusion(index, size, &leaves[index as usize], &want, &root).unwrap();
            }
        }
    }
}
