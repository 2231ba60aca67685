//! C2SP tlog-tiles at the service root: `GET /checkpoint`, `GET /tile/<L>/<N>[.p/<W>]`
//! (hash tiles, served as stored) and `GET /tile/entries/<N>[.p/<W>]` (entry bundles,
//! assembled from the stored entries, kept once full). The checkpoint and hash tiles are
//! public; entry bundles need a token that may read the log unless `--public-entries`.
//! These paths are the spec's, outside the OpenAPI description (their `<N>` spans
//! several path segments).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use actix_web::{http::header, web, HttpRequest, HttpResponse};

use super::auth::{Caller, Readers};
use super::State;
use crate::error::AppError;
use crate::log::tiles::TILE_WIDTH;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/checkpoint", web::get().to(checkpoint))
        .route("/tile/{path:.+}", web::get().to(tile));
}

/// `Cache-Control` of what never changes (full tiles and bundles).
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// Of partial tiles: they are immutable too, but may be deleted once full.
const PARTIAL: &str = "public, max-age=60";
/// Entry bundles that need a token: no shared cache may keep one for other callers.
const IMMUTABLE_PRIVATE: &str = "private, max-age=31536000, immutable";
const PARTIAL_PRIVATE: &str = "private, max-age=60";

/// The checkpoint to serve, as `GET /checkpoint` and `GET /v1/log/checkpoint` answer it:
/// with a witness policy, the newest checkpoint that met its quorum with every
/// cosignature gathered, unless `latest` (the newest signed) is asked for or none has
/// met it yet (then the newest signed, marked `Veritrail-Quorum: unmet`).
pub async fn checkpoint_response(
    state: &State,
    req: &HttpRequest,
) -> Result<HttpResponse, AppError> {
    let latest = req
        .query_string()
        .split('&')
        .any(|p| p == "latest" || p.starts_with("latest="));
    let mut res = HttpResponse::Ok();
    res.content_type("text/plain; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-cache"));
    if !latest {
        let (ledger, policy) = (state.ledger.clone(), state.witness_policy.clone());
        let served = web::block(move || {
            crate::witness::submit::served_checkpoint(&ledger, policy.as_deref())
        })
        .await
        .map_err(AppError::internal)??;
        match served {
            Some((_, note)) => return Ok(res.body(note)),
            None => {
                res.insert_header(("Veritrail-Quorum", "unmet"));
            }
        }
    }
    Ok(res.body(state.ledger.latest().note))
}

async fn checkpoint(state: State, req: HttpRequest) -> Result<HttpResponse, AppError> {
    checkpoint_response(&state, &req).await
}

/// A tile path: the level (`None` for entry bundles), the index and the partial width.
#[derive(Debug, PartialEq, Eq)]
pub struct TilePath {
    pub level: Option<u8>,
    pub index: u64,
    pub width: Option<u16>,
}

/// Parse `<L>/<N>[.p/<W>]` or `entries/<N>[.p/<W>]` exactly as tlog-tiles encodes them
/// (no leading zeros in `L` and `W`, `N` in 3-digit elements, all but the last `x`-prefixed).
pub fn parse_tile_path(path: &str) -> Option<TilePath> {
    let (head, rest) = path.split_once('/')?;
    let level = if head == "entries" {
        None
    } else {
        let l: u8 = decimal(head)?.try_into().ok()?;
        if l > 63 {
            return None;
        }
        Some(l)
    };
    let mut segs: Vec<&str> = rest.split('/').collect();
    let mut width = None;
    if segs.len() >= 2 && segs[segs.len() - 2].ends_with(".p") {
        let w = decimal(segs.pop()?)?;
        if !(1..TILE_WIDTH as u64).contains(&w) {
            return None;
        }
        width = Some(w as u16);
        let last = segs.len() - 1;
        segs[last] = segs[last].strip_suffix(".p")?;
    }
    let mut index: u64 = 0;
    for (i, seg) in segs.iter().enumerate() {
        let digits = if i + 1 < segs.len() {
            seg.strip_prefix('x')?
        } else {
            seg
        };
        if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        // No leading all-zero element: one encoding per index.
        if i == 0 && segs.len() > 1 && digits == "000" {
            return None;
        }
        index = index
            .checked_mul(1000)?
            .checked_add(digits.parse::<u64>().ok()?)?;
    }
    Some(TilePath {
        level,
        index,
        width,
    })
}

fn decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

/// The hashes (or entries) tile `index` at `level` needs from a tree of `size` leaves to
/// be `width` wide: whether that tree has them.
fn covered(size: u64, level: u8, index: u64, width: u64) -> bool {
    // A hash at tree level 64 or above spans more leaves than a log can hold.
    if level >= 8 {
        return false;
    }
    let per = 1u128 << (8 * level as u32);
    (index as u128 * TILE_WIDTH as u128 + width as u128) * per <= size as u128
}

fn not_found(what: &str) -> AppError {
    AppError::not_found(format!("no {what} at that path for the log's size"))
}

async fn tile(state: State, req: HttpRequest) -> Result<HttpResponse, AppError> {
    let path = req.match_info().get("path").unwrap_or_default().to_owned();
    let Some(p) = parse_tile_path(&path) else {
        return Err(not_found("tile (not a tlog-tiles path)"));
    };
    let width = p.width.map_or(TILE_WIDTH as u64, u64::from);
    let size = state.ledger.latest().size;
    let mut cache = if p.width.is_some() {
        PARTIAL
    } else {
        IMMUTABLE
    };
    let body = match p.level {
        Some(level) => {
            if !covered(size, level, p.index, width) {
                return Err(not_found("tile"));
            }
            let store = state.ledger.store().clone();
            let stored = web::block(move || store.tile((level, p.index)))
                .await
                .map_err(AppError::internal)??;
            match stored {
                Some(b) if b.len() >= width as usize * 32 => b[..width as usize * 32].to_vec(),
                _ => return Err(not_found("tile")),
            }
        }
        None => {
            if !state.public_entries {
                Caller::<Readers>::check(&req)?;
                cache = if p.width.is_some() {
                    PARTIAL_PRIVATE
                } else {
                    IMMUTABLE_PRIVATE
                };
            }
            if !covered(size, 0, p.index, width) {
                return Err(not_found("entry bundle"));
            }
            bundle(&state, p.index, width).await?
        }
    };
    Ok(HttpResponse::Ok()
        .content_type("application/octet-stream")
        .insert_header((header::CACHE_CONTROL, cache))
        .body(body))
}

/// Entry bundle `index` of `width` entries: each a 2-byte big-endian length and its bytes
/// (every entry fits: the log refuses entries over 65,535 bytes).
async fn bundle(state: &State, index: u64, width: u64) -> Result<Vec<u8>, AppError> {
    let full = width == TILE_WIDTH as u64;
    if full {
        if let Some(b) = state.tiles.get(index) {
            return Ok(b.to_vec());
        }
    }
    let ledger = state.ledger.clone();
    let start = index * TILE_WIDTH as u64;
    let entries = web::block(move || ledger.entries(start, width))
        .await
        .map_err(AppError::internal)??;
    if entries.len() as u64 != width {
        return Err(not_found("entry bundle"));
    }
    let mut out = Vec::with_capacity(entries.iter().map(|e| e.len() + 2).sum());
    for e in &entries {
        let n = u16::try_from(e.len()).map_err(|_| {
            AppError::internal(format!(
                "an entry of {} bytes does not fit a bundle",
                e.len()
            ))
        })?;
        out.extend_from_slice(&n.to_be_bytes());
        out.extend_from_slice(e);
    }
    if full {
        state.tiles.put(index, Arc::from(out.as_slice()));
    }
    Ok(out)
}

/// The most recently assembled full entry bundles (they never change).
#[derive(Default)]
pub struct BundleCache {
    inner: Mutex<Kept>,
}

/// Bundles by index, and their indices oldest first.
type Kept = (HashMap<u64, Arc<[u8]>>, VecDeque<u64>);

/// Full bundles kept (at most about 64 × 256 entries' bytes).
const KEPT_BUNDLES: usize = 64;

impl BundleCache {
    fn get(&self, index: u64) -> Option<Arc<[u8]>> {
        self.inner
            .lock()
            .expect("bundle cache")
            .0
            .get(&index)
            .cloned()
    }

    fn put(&self, index: u64, bundle: Arc<[u8]>) {
        let mut g = self.inner.lock().expect("bundle cache");
        let (map, order) = &mut *g;
        if map.insert(index, bundle).is_none() {
            order.push_back(index);
        }
        while order.len() > KEPT_BUNDLES {
            if let Some(old) = order.pop_front() {
                map.remove(&old);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tile_paths_are_read_as_the_spec_encodes_them() {
        let t = |l, i, w| TilePath {
            level: l,
            index: i,
            width: w,
        };
        assert_eq!(parse_tile_path("0/000"), Some(t(Some(0), 0, None)));
        assert_eq!(
            parse_tile_path("1/x001/x234/067"),
            Some(t(Some(1), 1_234_067, None))
        );
        assert_eq!(
            parse_tile_path("2/x001/067.p/17"),
            Some(t(Some(2), 1067, Some(17)))
        );
        assert_eq!(
            parse_tile_path("entries/005.p/255"),
            Some(t(None, 5, Some(255)))
        );
        for bad in [
            "0/5",
            "00/000",
            "64/000",
            "0/x000/005",
            "0/001/002",
            "0/000.p/0",
            "0/000.p/256",
            "0/000.p/07",
            "entries/x1/000",
            "0/abc",
            "0",
        ] {
            assert_eq!(parse_tile_path(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_tile_is_served_only_when_the_tree_covers_it() {
        assert!(covered(256, 0, 0, 256));
        assert!(!covered(255, 0, 0, 256));
        assert!(covered(255, 0, 0, 255));
        assert!(covered(70_000, 1, 0, 256));
        assert!(covered(70_000, 1, 1, 17));
        assert!(!covered(70_000, 1, 1, 18));
        assert!(covered(70_000, 2, 0, 1));
        assert!(!covered(u64::MAX, 63, 1, 1));
    }
}
