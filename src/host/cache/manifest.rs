//! BuildKit's cache manifest (`v1.CacheConfig`, JSON): the blobs it lists,
//! and whether BuildKit's import can use it at all. Pure.
//!
//! `layers` lists one blob per layer (`blob`: its digest, `parent`: another
//! layer's index or -1, `annotations` with `diffID` and `size`); `records`
//! are cache keys, whose `layers` point into `layers` by index. BuildKit's
//! import refuses a layer without annotations or `diffID`, and an index that
//! points nowhere; then the whole import fails, as it does for a listed blob
//! the bucket lacks.

use serde::Deserialize;

#[derive(Deserialize)]
struct Document {
    #[serde(default)]
    layers: Vec<Layer>,
    #[serde(default)]
    records: Vec<Record>,
}

#[derive(Deserialize)]
struct Layer {
    blob: String,
    /// BuildKit omits a parent of 0 (`omitempty`); -1 is none.
    #[serde(default)]
    parent: i64,
    annotations: Option<Annotations>,
}

#[derive(Deserialize)]
struct Annotations {
    #[serde(rename = "diffID", default)]
    diff_id: String,
    #[serde(default)]
    size: i64,
}

#[derive(Deserialize)]
struct Record {
    #[serde(default)]
    layers: Vec<RecordLayer>,
}

#[derive(Deserialize)]
struct RecordLayer {
    layer: i64,
}

/// A manifest's blobs: each digest once, with the size its annotation gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    /// Digests as written (`sha256:4e6b…`), each once, in the manifest's order.
    pub blobs: Vec<(String, u64)>,
    /// Layers, counting a blob listed twice twice.
    pub layers: usize,
}

/// Reads a manifest; `Err` says why BuildKit's import would refuse it.
pub fn parse(bytes: &[u8]) -> Result<Listing, String> {
    // An object: serde would also take an array for a struct.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err("not a BuildKit cache manifest: not a JSON object".into());
    }
    let doc: Document =
        serde_json::from_slice(bytes).map_err(|e| format!("not a BuildKit cache manifest (JSON): {e}"))?;
    let count = doc.layers.len() as i64;
    let mut blobs: Vec<(String, u64)> = Vec::with_capacity(doc.layers.len());
    for (i, layer) in doc.layers.iter().enumerate() {
        let Some(annotations) = &layer.annotations else {
            return Err(format!("layer {i} has no annotations, which BuildKit's import refuses"));
        };
        if annotations.diff_id.is_empty() {
            return Err(format!("layer {i} has no diffID, which BuildKit's import refuses"));
        }
        if layer.blob.is_empty() {
            return Err(format!("layer {i} names no blob"));
        }
        if layer.parent < -1 || layer.parent >= count {
            return Err(format!("layer {i} has parent {} of {count} layers", layer.parent));
        }
        if !blobs.iter().any(|(b, _)| *b == layer.blob) {
            blobs.push((layer.blob.clone(), annotations.size.max(0) as u64));
        }
    }
    for (i, record) in doc.records.iter().enumerate() {
        if let Some(bad) = record.layers.iter().find(|l| l.layer < 0 || l.layer >= count) {
            return Err(format!("record {i} points at layer {} of {count}", bad.layer));
        }
    }
    Ok(Listing { blobs, layers: doc.layers.len() })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Written by BuildKit v0.11.6 to a bucket garage-init prepared.
    const REAL: &str = include_str!("../../../tests/data/buildkit-s3-cache-manifest.json");

    #[test]
    fn a_manifest_buildkit_wrote_lists_its_three_blobs_with_their_sizes() {
        let listing = parse(REAL.as_bytes()).unwrap();
        assert_eq!(listing.layers, 3);
        assert_eq!(
            listing.blobs[1],
            ("sha256:6dbe9cbd110f2f1c02154c43b1db7fb59906d369d9169568a5bedcedec455e85".to_string(), 12_586_895)
        );
        assert_eq!(listing.blobs.iter().map(|(_, s)| s).sum::<u64>(), 103 + 12_586_895 + 127);
    }

    #[test]
    fn what_buildkits_import_refuses_is_said() {
        assert!(parse(b"{\"layers\": [").unwrap_err().starts_with("not a BuildKit cache manifest"));
        assert!(parse(b"[]").is_err());
        let no_annotations = r#"{"layers":[{"blob":"sha256:aa","parent":-1}]}"#;
        assert!(parse(no_annotations.as_bytes()).unwrap_err().contains("no annotations"));
        let bad_record = REAL.replacen("{\"layer\":2,", "{\"layer\":7,", 1);
        assert!(parse(bad_record.as_bytes()).unwrap_err().contains("record 0 points at layer 7 of 3"));
        let bad_parent = REAL.replacen("\"parent\":1,", "\"parent\":3,", 1);
        assert!(parse(bad_parent.as_bytes()).unwrap_err().contains("parent 3 of 3"));
        // No layers at all: an empty cache, which BuildKit imports as a miss.
        assert_eq!(parse(b"{}").unwrap(), Listing { blobs: vec![], layers: 0 });
    }

    #[test]
    fn a_blob_listed_by_two_layers_is_one_blob() {
        let twice = r#"{"layers":[
            {"blob":"sha256:aa","parent":-1,"annotations":{"diffID":"sha256:d1","size":5}},
            {"blob":"sha256:aa","parent":0,"annotations":{"diffID":"sha256:d1","size":5}}]}"#;
        let listing = parse(twice.as_bytes()).unwrap();
        assert_eq!((listing.blobs.len(), listing.layers), (1, 2));
    }
}
