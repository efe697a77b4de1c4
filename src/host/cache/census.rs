//! What the cache holds, counted while the bucket is listed: the manifests
//! read whole, the blobs they list in a compact sorted table, and only
//! counters for everything else. Pure: the requests are the command's.
//!
//! Memory: the table holds one entry (a 32-byte sha256, its size and a
//! count, about 56 bytes) per distinct blob that some manifest lists, and
//! each manifest a 4-byte index per blob. Blobs no manifest lists, however
//! many, are counted and never kept: a bucket of millions of them costs
//! one listing page (1000 keys) at a time.

use std::collections::HashSet;

use jiff::Timestamp;

use super::store::Object;

/// A blob's digest as BuildKit names it. `sha256:<64 hex>` is kept as its
/// 32 bytes; any other form as text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Digest {
    Sha256([u8; 32]),
    Other(Box<str>),
}

impl Digest {
    pub fn parse(text: &str) -> Self {
        let sha256 = text.strip_prefix("sha256:").filter(|h| h.len() == 64).and_then(|hex| {
            let mut bytes = [0u8; 32];
            for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
                let digit = |c: u8| match c {
                    b'0'..=b'9' => Some(c - b'0'),
                    b'a'..=b'f' => Some(c - b'a' + 10),
                    _ => None,
                };
                bytes[i] = digit(pair[0])? << 4 | digit(pair[1])?;
            }
            Some(bytes)
        });
        match sha256 {
            Some(bytes) => Self::Sha256(bytes),
            None => Self::Other(text.into()),
        }
    }

    /// Whether `name` has a digest's form (`algorithm:encoded`, as OCI
    /// defines it). Objects under the blobs prefix named otherwise are not
    /// BuildKit's blobs: counted, never deleted.
    pub fn is_digest_form(name: &str) -> bool {
        let Some((algorithm, encoded)) = name.split_once(':') else { return false };
        let alg_ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "+._-".contains(c);
        let enc_ok = |c: char| c.is_ascii_alphanumeric() || "=_-".contains(c);
        !algorithm.is_empty() && !encoded.is_empty() && algorithm.chars().all(alg_ok) && encoded.chars().all(enc_ok)
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sha256(bytes) => {
                f.write_str("sha256:")?;
                bytes.iter().try_for_each(|b| write!(f, "{b:02x}"))
            }
            Self::Other(text) => f.write_str(text),
        }
    }
}

/// A blob some manifest lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub digest: Digest,
    /// The size the listing gave; until then, the manifest's annotation.
    pub size: u64,
    /// How many manifests list it.
    pub manifests: u32,
    /// Seen in the listing of the blobs.
    pub present: bool,
}

/// The blobs the manifests list, sorted by digest.
#[derive(Debug, Default)]
pub struct Table {
    entries: Vec<Entry>,
    /// Listed by manifests read after the table was built (a build that
    /// exported while `gc` ran).
    late: HashSet<Digest>,
}

impl Table {
    /// Builds the table from each manifest's blobs (each digest once per
    /// manifest, with its annotated size); returns each manifest's blobs as
    /// indexes into it.
    pub fn build(manifests: Vec<Vec<(Digest, u64)>>) -> (Self, Vec<Vec<u32>>) {
        let mut all: Vec<(Digest, u64)> = manifests.iter().flatten().cloned().collect();
        all.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut entries: Vec<Entry> = Vec::new();
        for (digest, size) in all {
            match entries.last_mut() {
                Some(last) if last.digest == digest => last.manifests += 1,
                _ => entries.push(Entry { digest, size, manifests: 1, present: false }),
            }
        }
        entries.shrink_to_fit();
        let table = Self { entries, late: HashSet::new() };
        let indexes = manifests
            .into_iter()
            .map(|blobs| {
                blobs.iter().map(|(d, _)| table.find(d).expect("every listed digest is in the table") as u32).collect()
            })
            .collect();
        (table, indexes)
    }

    pub fn find(&self, digest: &Digest) -> Option<usize> {
        self.entries.binary_search_by(|e| e.digest.cmp(digest)).ok()
    }

    pub fn entry(&self, index: u32) -> &Entry {
        &self.entries[index as usize]
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Whether any manifest read so far lists `digest`.
    pub fn lists(&self, digest: &Digest) -> bool {
        self.find(digest).is_some() || self.late.contains(digest)
    }

    /// Adds the blobs of a manifest read after the table was built.
    pub fn add_late(&mut self, digests: impl IntoIterator<Item = Digest>) {
        self.late.extend(digests);
    }
}

/// Objects and bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub objects: u64,
    pub bytes: u64,
}

impl Tally {
    fn add(&mut self, bytes: u64) {
        self.objects += 1;
        self.bytes += bytes;
    }
}

/// A manifest as read.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// BuildKit's `name`: the key without the manifests' prefix.
    pub name: String,
    pub object: Object,
    pub state: ManifestState,
}

#[derive(Debug, Clone)]
pub enum ManifestState {
    /// Its blobs (indexes into the [`Table`]), and how many layers list them.
    Read { blobs: Vec<u32>, layers: usize },
    /// Why BuildKit's import would refuse it (or why it could not be read).
    Unreadable(String),
}

/// What a listed object under the blobs prefix is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobClass {
    /// A manifest lists it.
    Listed,
    /// Named like a blob, and no manifest lists it.
    Unlisted,
    /// Not named like a blob, and no manifest lists it: never deleted.
    Other,
}

/// Why a manifest would fail an import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Broken {
    /// It lists blobs the bucket lacks (these), of `listed`.
    Missing {
        missing: Vec<String>,
        listed: usize,
    },
    Unreadable(String),
}

/// Everything counted in one pass.
#[derive(Debug, Default)]
pub struct Census {
    /// Where blobs' keys start (`blobs/`).
    pub blobs_prefix: String,
    pub manifests: Vec<Manifest>,
    pub table: Table,
    /// Every object under the blobs prefix.
    pub blobs: Tally,
    /// Objects under the blobs prefix not named like a blob and listed by no manifest.
    pub other: Tally,
    /// Blobs no manifest lists.
    pub unlisted: Tally,
    /// When the oldest of them was last written.
    pub oldest_unlisted: Option<Timestamp>,
}

impl Census {
    /// Counts one object of the blobs' listing, and says what it is.
    pub fn observe(&mut self, object: &Object) -> BlobClass {
        self.blobs.add(object.size);
        let name = object.key.strip_prefix(&self.blobs_prefix).unwrap_or(&object.key);
        let digest = Digest::parse(name);
        if let Some(i) = self.table.find(&digest) {
            let entry = &mut self.table.entries[i];
            entry.present = true;
            entry.size = object.size;
            return BlobClass::Listed;
        }
        if self.table.late.contains(&digest) {
            return BlobClass::Listed;
        }
        if !Digest::is_digest_form(name) {
            self.other.add(object.size);
            return BlobClass::Other;
        }
        self.unlisted.add(object.size);
        if let Ok(at) = object.last_modified.parse::<Timestamp>() {
            self.oldest_unlisted = Some(self.oldest_unlisted.map_or(at, |o| o.min(at)));
        }
        BlobClass::Unlisted
    }

    /// The manifests the manifests' listing held.
    pub fn manifests_tally(&self) -> Tally {
        let mut t = Tally::default();
        self.manifests.iter().for_each(|m| t.add(m.object.size));
        t
    }

    /// Why `manifest` would fail an import, once the blobs were listed.
    pub fn broken(&self, manifest: &Manifest) -> Option<Broken> {
        match &manifest.state {
            ManifestState::Unreadable(why) => Some(Broken::Unreadable(why.clone())),
            ManifestState::Read { blobs, .. } => {
                let missing: Vec<String> = blobs
                    .iter()
                    .map(|&i| self.table.entry(i))
                    .filter(|e| !e.present)
                    .map(|e| e.digest.to_string())
                    .collect();
                (!missing.is_empty()).then_some(Broken::Missing { missing, listed: blobs.len() })
            }
        }
    }

    /// The bytes of the blobs a manifest lists (the listing's sizes, the
    /// annotations' for missing ones).
    pub fn referenced_bytes(&self, blobs: &[u32]) -> u64 {
        blobs.iter().map(|&i| self.table.entry(i).size).sum()
    }

    /// Blobs in the bucket that more than one manifest lists.
    pub fn shared(&self) -> Tally {
        let mut t = Tally::default();
        self.table.entries().iter().filter(|e| e.present && e.manifests > 1).for_each(|e| t.add(e.size));
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "sha256:4e6bb70ab32baddf68d3b5b8533f32c84dd3783692efbb5e8a3cb5a5466071e6";
    const B: &str = "sha256:6dbe9cbd110f2f1c02154c43b1db7fb59906d369d9169568a5bedcedec455e85";
    const C: &str = "sha256:8cb6ae6316288b143cc93167f27c0a46aeb8707dced35a7d8f941bdc5154b10f";

    fn object(key: &str, size: u64, at: &str) -> Object {
        Object { key: key.into(), size, last_modified: at.into(), etag: String::new() }
    }

    #[test]
    fn digests_keep_their_text_and_sha256_is_stored_as_bytes() {
        assert!(matches!(Digest::parse(A), Digest::Sha256(_)));
        assert_eq!(Digest::parse(A).to_string(), A);
        assert!(matches!(Digest::parse("sha256:ABC"), Digest::Other(_)));
        assert!(matches!(Digest::parse(&A.to_uppercase()), Digest::Other(_)), "BuildKit writes lower case");
        assert_eq!(Digest::parse("sha512:ab").to_string(), "sha512:ab");
        assert!(Digest::is_digest_form(A) && Digest::is_digest_form("sha512:ab"));
        for not_a_blob in ["README", "sha256:", ":ab", "sub/dir:x", "sha256:a b"] {
            assert!(!Digest::is_digest_form(not_a_blob), "{not_a_blob}");
        }
    }

    #[test]
    fn the_listing_marks_listed_blobs_present_and_only_counts_the_others() {
        let one = vec![(Digest::parse(A), 10), (Digest::parse(B), 20)];
        let two = vec![(Digest::parse(B), 20), (Digest::parse(C), 30)];
        let (table, indexes) = Table::build(vec![one, two]);
        assert_eq!(table.entries().len(), 3);
        let mut census = Census { blobs_prefix: "blobs/".into(), table, ..Default::default() };
        for (i, blobs) in indexes.into_iter().enumerate() {
            census.manifests.push(Manifest {
                name: format!("m{i}"),
                object: object(&format!("manifests/m{i}"), 100, ""),
                state: ManifestState::Read { blobs, layers: 2 },
            });
        }
        let seen = [
            (object(&format!("blobs/{A}"), 11, "2026-12-01T00:00:00.000Z"), BlobClass::Listed),
            (object(&format!("blobs/{B}"), 21, "2026-12-01T00:00:00.000Z"), BlobClass::Listed),
            (object("blobs/sha256:0123", 5, "2026-11-01T00:00:00.000Z"), BlobClass::Unlisted),
            (object("blobs/sha256:4567", 6, "2026-11-02T00:00:00.000Z"), BlobClass::Unlisted),
            (object("blobs/notes.txt", 7, "2026-10-01T00:00:00.000Z"), BlobClass::Other),
        ];
        for (o, class) in &seen {
            assert_eq!(census.observe(o), *class, "{o:?}");
        }
        assert_eq!(census.blobs, Tally { objects: 5, bytes: 50 });
        assert_eq!((census.unlisted, census.other), (Tally { objects: 2, bytes: 11 }, Tally { objects: 1, bytes: 7 }));
        assert_eq!(census.oldest_unlisted.unwrap().to_string(), "2026-11-01T00:00:00Z");
        // m0 is whole; m1 lacks C, whose annotated size still counts.
        assert_eq!(census.broken(&census.manifests[0]), None);
        assert_eq!(
            census.broken(&census.manifests[1]),
            Some(Broken::Missing { missing: vec![C.to_string()], listed: 2 })
        );
        let ManifestState::Read { blobs, .. } = &census.manifests[1].state else { unreachable!() };
        assert_eq!(census.referenced_bytes(blobs), 21 + 30);
        // B is the one blob both list.
        assert_eq!(census.shared(), Tally { objects: 1, bytes: 21 });
        assert_eq!(census.manifests_tally(), Tally { objects: 2, bytes: 200 });
    }

    #[test]
    fn a_manifest_read_late_protects_its_blobs() {
        let mut census = Census { blobs_prefix: "blobs/".into(), ..Default::default() };
        census.table.add_late([Digest::parse(A)]);
        assert!(census.table.lists(&Digest::parse(A)));
        assert_eq!(census.observe(&object(&format!("blobs/{A}"), 1, "")), BlobClass::Listed);
    }
}
