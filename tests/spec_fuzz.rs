//! Fuzzing the spec parser for a bounded time: mutations of valid specs
//! (byte flips, splices, truncations, duplicated lines, deep nesting,
//! anchors) must give `Ok` or a clean error, never a panic or a hang.
//! The seed is printed, so a failure can be replayed with SPEC_FUZZ_SEED.

use std::path::Path;
use std::time::{Duration, Instant};

use fastrand::Rng;
use garage_init::desired::RoleTemplate;
use garage_init::spec;

const SEEDS: &[&str] = &[
    "{}",
    "cluster:\n  expected_nodes: 3\n  zone: dc1\n  capacity: 10GB\n",
    "cluster:\n  zone_redundancy: 2\n  nodes:\n    - admin_url: http://g1:3903\n      zone: dc1\n      capacity: 1GB\n    - admin_url: http://g2:3903\n      rpc_address: g2:3901\n      zone: dc2\n      gateway: true\n      tags: [a, b]\n",
    "buckets:\n  - name: buildkit-cache\n    aliases: [cache, other.alias]\n    quotas:\n      max_size: 50GB\n      max_objects: 1000\n",
    "keys:\n  - id: GK0123456789abcdef01234567\n    name: builder\n    secret: 0000000000000000000000000000000000000000000000000000000000000001\ngrants:\n  - key: builder\n    bucket: bb1\n    permissions: [read, write, owner]\nbuckets:\n  - name: bb1\n",
    "cluster:\n  tags: &t [x, y]\n  nodes:\n    - admin_url: http://a:3903\n      tags: *t\nbuckets: []\n",
];

const TOKENS: &[&str] = &[
    "\n",
    " ",
    "  ",
    ":",
    "- ",
    "[",
    "]",
    "{",
    "}",
    "&a ",
    "*a",
    "!!str ",
    "!!binary ",
    "---\n",
    "...\n",
    "'",
    "\"",
    "#",
    "|\n",
    ">\n",
    "? ",
    ",",
    "null",
    "~",
    "true",
    "0x10",
    "1e999",
    "-1",
    "18446744073709551616",
    "\u{0}",
    "\u{feff}",
    "\t",
    "%YAML 1.2\n",
    "<<: *a\n",
    "cluster:",
    "nodes:",
    "gateway: true",
    "capacity: ",
    "GK",
    "\u{1F600}",
];

fn mutate(rng: &mut Rng, input: &str) -> String {
    let mut bytes = input.as_bytes().to_vec();
    for _ in 0..rng.usize(1..6) {
        let at = if bytes.is_empty() { 0 } else { rng.usize(0..=bytes.len()) };
        match rng.usize(0..7) {
            0 if !bytes.is_empty() => {
                let i = rng.usize(0..bytes.len());
                bytes[i] = rng.u8(..);
            }
            1 => {
                let t = TOKENS[rng.usize(0..TOKENS.len())].as_bytes();
                bytes.splice(at..at, t.iter().copied());
            }
            2 => bytes.truncate(at),
            3 if !bytes.is_empty() => {
                let end = rng.usize(at.min(bytes.len())..=bytes.len());
                let chunk = bytes[at.min(bytes.len())..end].to_vec();
                bytes.splice(at..at, chunk.into_iter().cycle().take(rng.usize(0..4000)));
            }
            4 => {
                let depth = rng.usize(1..3000);
                let open = if rng.bool() { "[" } else { "{a: " };
                bytes.splice(at..at, open.repeat(depth).into_bytes());
            }
            5 if !bytes.is_empty() => {
                let i = rng.usize(0..bytes.len());
                bytes.remove(i);
            }
            _ => {
                let other = SEEDS[rng.usize(0..SEEDS.len())].as_bytes();
                bytes.splice(at..at, other.iter().copied());
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

#[test]
fn mutated_specs_never_panic_or_hang() {
    let seed: u64 =
        std::env::var("SPEC_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| fastrand::u64(..));
    let budget = Duration::from_secs(std::env::var("SPEC_FUZZ_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(10));
    eprintln!("spec fuzz: seed {seed} (replay with SPEC_FUZZ_SEED={seed}), {budget:?}");
    let mut rng = Rng::with_seed(seed);
    let template = RoleTemplate { zone: "dc1".into(), capacity: None, tags: vec![] };
    let started = Instant::now();
    let (mut runs, mut accepted) = (0u64, 0u64);
    let mut slowest = Duration::ZERO;
    while started.elapsed() < budget {
        let base = SEEDS[rng.usize(0..SEEDS.len())];
        let input = mutate(&mut rng, base);
        let one = Instant::now();
        let result = spec::parse(&input, "fuzz.yaml", Path::new("/nonexistent"), &template);
        let took = one.elapsed();
        slowest = slowest.max(took);
        assert!(took < Duration::from_secs(1), "seed {seed}: {took:?} on input {input:?}");
        if let Err(e) = &result {
            assert!(e.to_string().starts_with("invalid spec fuzz.yaml"), "seed {seed}: odd error {e} for {input:?}");
        } else {
            accepted += 1;
        }
        runs += 1;
    }
    eprintln!("spec fuzz: {runs} inputs, {accepted} accepted, slowest {slowest:?}");
    assert!(runs > 1000, "only {runs} inputs in {budget:?}");
    assert!(accepted > 0 && accepted < runs, "the mutations should give both valid and invalid specs");
}

#[test]
fn every_seed_is_a_valid_spec() {
    let template = RoleTemplate { zone: "dc1".into(), capacity: Some(1 << 30), tags: vec![] };
    for s in SEEDS {
        spec::parse(s, "seed.yaml", Path::new("."), &template).unwrap_or_else(|e| panic!("{s}: {e}"));
    }
}
