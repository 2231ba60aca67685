//! In-process benchmark of the ledger core: batched appends (one flush per batch),
//! inclusion and consistency proofs at size, and the offline verifier.
//! Run with `scripts/bench-ledger` (or `cargo bench --bench ledger_core -- [entries] [batch]`).

use std::sync::Arc;
use std::time::Instant;

use veritrail::log::note::NoteSigner;
use veritrail::log::verify::verify_store;
use veritrail::log::{AppendRequest, Draft, Drafts, Ledger, Prepared};
use veritrail::storage::sled::SledStore;

fn body(n: u64) -> serde_cbor::Value {
    use serde_cbor::Value;
    let mut m = std::collections::BTreeMap::new();
    m.insert(
        Value::Text("decision_id".into()),
        Value::Text(format!("d-{n:012}")),
    );
    m.insert(
        Value::Text("model_version".into()),
        Value::Text("1.4.2".into()),
    );
    m.insert(Value::Text("subject".into()), Value::Bytes(vec![0xab; 32]));
    m.insert(
        Value::Text("input_sha256".into()),
        Value::Bytes(vec![0xcd; 32]),
    );
    m.insert(Value::Text("output".into()), Value::Text("approved".into()));
    m.insert(
        Value::Text("reasons".into()),
        Value::Array(vec![
            Value::Text("income_ok".into()),
            Value::Text("history_ok".into()),
        ]),
    );
    Value::Map(m)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn main() {
    let args: Vec<String> = std::env::args().filter(|a| !a.starts_with("--")).collect();
    let total: u64 = args
        .get(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let batch: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1000);
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        SledStore::open(
            dir.path(),
            &veritrail::register::projections::keys::packing(),
        )
        .unwrap(),
    );
    let signer = NoteSigner::new(
        "bench.local/log",
        ed25519_dalek::SigningKey::from_bytes(&[1; 32]),
    )
    .unwrap();
    let verifier = signer.verifier();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (ledger, writer) =
        Ledger::<String>::open(store.clone(), signer, Default::default(), Arc::new(|_| {}))
            .unwrap();

    let mut entry_bytes = 0usize;
    let started = Instant::now();
    rt.block_on(async {
        // Two jobs in flight so that one is prepared while the other flushes.
        let mut n = 0u64;
        let mut inflight = std::collections::VecDeque::new();
        while n < total {
            let reqs: Vec<AppendRequest<String>> = (n..(n + batch).min(total))
                .map(|i| AppendRequest {
                    reads: Vec::new(),
                    actor: "pipeline".into(),
                    command: Box::new(move |_s| {
                        Ok(Prepared::Append(Drafts::one(Draft {
                            kind: "decision.recorded".into(),
                            system: Some("credit-scoring".into()),
                            body: body(i),
                        })))
                    }),
                })
                .collect();
            n += reqs.len() as u64;
            let l = ledger.clone();
            inflight.push_back(tokio::spawn(async move { l.append_many(reqs).await }));
            if inflight.len() >= 2 {
                for r in inflight.pop_front().unwrap().await.unwrap() {
                    r.unwrap();
                }
            }
        }
        for h in inflight {
            for r in h.await.unwrap() {
                r.unwrap();
            }
        }
    });
    let secs = started.elapsed().as_secs_f64();
    for e in ledger.entries(0, 1000).unwrap() {
        entry_bytes += e.len();
    }
    let avg_entry = entry_bytes as f64 / 1000.0;
    println!("append: {total} entries of ~{avg_entry:.0} bytes in batches of {batch}: {:.0} entries/s ({secs:.2} s)", total as f64 / secs);

    let size = ledger.latest().size;
    let mut incl = Vec::new();
    let mut cons = Vec::new();
    let mut x = 0x9e3779b97f4a7c15u64;
    for _ in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let i = x % size;
        let t = Instant::now();
        ledger.inclusion(i, None).unwrap();
        incl.push(t.elapsed().as_secs_f64() * 1e6);
        let t = Instant::now();
        ledger.consistency(i.max(1), None).unwrap();
        cons.push(t.elapsed().as_secs_f64() * 1e6);
    }
    incl.sort_by(f64::total_cmp);
    cons.sort_by(f64::total_cmp);
    println!(
        "inclusion proof at {size}: p50 {:.1} µs, p99 {:.1} µs; consistency proof: p50 {:.1} µs, p99 {:.1} µs",
        percentile(&incl, 0.5),
        percentile(&incl, 0.99),
        percentile(&cons, 0.5),
        percentile(&cons, 0.99)
    );
    drop(ledger);
    writer.join();

    let report = verify_store(&*store, &verifier).unwrap();
    println!(
        "verify: {} entries, {} checkpoints in {:.2} s: {:.0} entries/s",
        report.entries,
        report.checkpoints,
        report.seconds,
        report.entries as f64 / report.seconds
    );
    store.db().flush().unwrap();
    let disk: u64 = walk(dir.path());
    println!(
        "disk: {disk} bytes, {:.0} bytes/entry ({:.2}x the raw entry bytes)",
        disk as f64 / total as f64,
        disk as f64 / total as f64 / avg_entry
    );
}

fn walk(p: &std::path::Path) -> u64 {
    std::fs::read_dir(p)
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let m = e.metadata().ok()?;
            Some(if m.is_dir() { walk(&e.path()) } else { m.len() })
        })
        .sum()
}
