//! A bucket's lifecycle rules: what Garage holds (the S3
//! `LifecycleConfiguration` document), what garage-init wants there, and the
//! decision between the two. Pure: the S3 reads and writes are in
//! [`crate::s3`].
//!
//! The bucket is BuildKit's S3 cache, and an expiry rule there must never
//! leave a manifest that lists a blob the bucket no longer has: BuildKit's
//! import of it fails the whole build. So the declared expiry becomes two
//! rules scoped by prefix: blobs expire after the declared days
//! ([`EXPIRE_BLOBS_ID`]), manifests [`crate::desired::MANIFEST_MARGIN_DAYS`]
//! sooner ([`EXPIRE_MANIFESTS_ID`]).
//!
//! garage-init owns the rules whose id it writes ([`EXPIRE_BLOBS_ID`],
//! [`EXPIRE_MANIFESTS_ID`], [`ABORT_ID`]) and the single rule for every
//! object that earlier versions wrote ([`EXPIRE_ID`]), which the pair
//! replaces; every other rule is someone else's and is written back as
//! Garage gave it, byte for byte. A rule of another id that acts like one of
//! ours (it also expires objects under the cache's prefixes, or also aborts
//! uploads) is reported as drift: both apply, and the earlier one wins.

use crate::desired::{CacheLayout, LifecycleWant};
use crate::s3::element_text;

/// Id of the rule that expires blobs, after the declared days.
pub const EXPIRE_BLOBS_ID: &str = "garage-init-expire-blobs";
/// Id of the rule that expires manifests, sooner than blobs.
pub const EXPIRE_MANIFESTS_ID: &str = "garage-init-expire-manifests";
/// Id of the rule that aborts incomplete multipart uploads.
pub const ABORT_ID: &str = "garage-init-abort-incomplete-uploads";
/// Id of the single rule that expired every object alike, which let a blob
/// expire before a manifest listing it. No longer written: a run that finds
/// it replaces it with the pair.
pub const EXPIRE_ID: &str = "garage-init-expire-objects";

/// One rule of a bucket's lifecycle configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub id: Option<String>,
    pub enabled: bool,
    /// Whether a filter narrows the rule (a prefix or an object size).
    pub filtered: bool,
    /// The filter's prefix, when a prefix is all the filter says.
    pub prefix: Option<String>,
    pub expire_days: Option<u64>,
    pub expire_date: Option<String>,
    pub abort_days: Option<u64>,
    /// The `<Rule>…</Rule>` element as read, written back unchanged.
    xml: String,
}

impl Rule {
    fn ours(&self) -> bool {
        matches!(self.id.as_deref(), Some(EXPIRE_BLOBS_ID | EXPIRE_MANIFESTS_ID | ABORT_ID | EXPIRE_ID))
    }

    fn new(id: &str, prefix: Option<String>, expire_days: Option<u32>, abort_days: Option<u32>) -> Self {
        let mut xml = format!("<Rule><ID>{id}</ID><Status>Enabled</Status>");
        if let Some(p) = &prefix {
            xml.push_str(&format!("<Filter><Prefix>{}</Prefix></Filter>", escape(p)));
        }
        if let Some(d) = expire_days {
            xml.push_str(&format!("<Expiration><Days>{d}</Days></Expiration>"));
        }
        if let Some(d) = abort_days {
            xml.push_str(&format!(
                "<AbortIncompleteMultipartUpload><DaysAfterInitiation>{d}</DaysAfterInitiation></AbortIncompleteMultipartUpload>"
            ));
        }
        xml.push_str("</Rule>");
        Self {
            id: Some(id.to_string()),
            enabled: true,
            filtered: prefix.is_some(),
            prefix,
            expire_days: expire_days.map(u64::from),
            expire_date: None,
            abort_days: abort_days.map(u64::from),
            xml,
        }
    }

    /// The rule's effect, as someone reading a report understands it.
    fn describe(&self) -> String {
        let mut acts = Vec::new();
        if let Some(d) = self.expire_days {
            acts.push(format!("expires objects after {}", days(d)));
        }
        if let Some(date) = &self.expire_date {
            acts.push(format!("expires objects on {date}"));
        }
        if let Some(d) = self.abort_days {
            acts.push(format!("aborts incomplete uploads after {}", days(d)));
        }
        if acts.is_empty() {
            acts.push("does nothing garage-init knows".into());
        }
        let scope = match (&self.prefix, self.filtered) {
            (Some(p), _) => format!(" (objects under {p})"),
            (None, true) => " (for some objects)".into(),
            (None, false) => String::new(),
        };
        let state = if self.enabled { "" } else { ", disabled" };
        format!("rule \"{}\"{scope} {}{state}", self.id.as_deref().unwrap_or("(no id)"), acts.join(" and "))
    }
}

fn days(n: u64) -> String {
    if n == 1 { "1 day".into() } else { format!("{n} days") }
}

/// The rules garage-init wants for `want`, ours only: manifests expire
/// first, then blobs; incomplete uploads are aborted wherever they are.
pub fn wanted_rules(want: &LifecycleWant) -> Vec<Rule> {
    let mut rules = Vec::new();
    if let (Some(blobs), Some(manifests)) = (want.expire_after_days, want.manifests_expire_after_days()) {
        rules.push(Rule::new(EXPIRE_MANIFESTS_ID, Some(want.layout.manifests()), Some(manifests), None));
        rules.push(Rule::new(EXPIRE_BLOBS_ID, Some(want.layout.blobs()), Some(blobs), None));
    }
    if let Some(d) = want.abort_incomplete_uploads_after_days {
        rules.push(Rule::new(ABORT_ID, None, None, Some(d)));
    }
    rules
}

/// "blobs expire after 30 days and manifests after 28, incomplete uploads are
/// aborted after 1 day"; the prefixes are named when they are not BuildKit's defaults.
pub fn describe_want(want: &LifecycleWant) -> String {
    let mut parts = Vec::new();
    match (want.expire_after_days, want.manifests_expire_after_days()) {
        (Some(b), Some(m)) => {
            let (blobs, manifests) = if want.layout == CacheLayout::default() {
                (String::new(), String::new())
            } else {
                (format!(" ({})", want.layout.blobs()), format!(" ({})", want.layout.manifests()))
            };
            parts.push(format!("blobs{blobs} expire after {} and manifests{manifests} after {m}", days(b.into())))
        }
        _ => parts.push("no expiry rules".into()),
    }
    match want.abort_incomplete_uploads_after_days {
        Some(d) => parts.push(format!("incomplete uploads are aborted after {}", days(d.into()))),
        None => parts.push("no rule for incomplete uploads".into()),
    }
    parts.join(", ")
}

/// What to do about one bucket's lifecycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecyclePlan {
    /// The whole configuration to write (others' rules first, as read, then
    /// ours); `Some(empty)`: delete the configuration. `None`: leave it.
    pub write: Option<Vec<Rule>>,
    /// Whether garage-init had no rule there before (the write creates rather than updates).
    pub creates: bool,
    /// Rules of others kept alongside ours.
    pub kept: usize,
    pub drift: Vec<String>,
}

/// Decides: pure, from the rules Garage holds now.
pub fn plan_lifecycle(current: &[Rule], want: &LifecycleWant) -> LifecyclePlan {
    let wanted = wanted_rules(want);
    let (ours, others): (Vec<&Rule>, Vec<&Rule>) = current.iter().partition(|r| r.ours());
    let same = ours.len() == wanted.len() && wanted.iter().all(|w| ours.iter().any(|o| same_effect(o, w)));
    let mut drift = Vec::new();
    for other in others.iter().filter(|r| r.enabled) {
        let expires = other.expire_days.is_some() || other.expire_date.is_some();
        let clashes = (expires && want.expire_after_days.is_some() && reaches_cache(other, &want.layout))
            || (other.abort_days.is_some() && want.abort_incomplete_uploads_after_days.is_some());
        if clashes {
            drift.push(format!("{} (not garage-init's; kept, and Garage applies both)", other.describe()));
        }
    }
    let write = (!same).then(|| others.iter().map(|r| (*r).clone()).chain(wanted).collect());
    LifecyclePlan { write, creates: ours.is_empty(), kept: others.len(), drift }
}

/// Whether `rule` may act on the cache's manifests or blobs: it has no
/// filter, a filter garage-init does not read as a prefix, or a prefix that
/// overlaps one of theirs. Another rule there can undo the order in which
/// manifests and blobs expire.
fn reaches_cache(rule: &Rule, layout: &CacheLayout) -> bool {
    match &rule.prefix {
        Some(p) => {
            [layout.manifests(), layout.blobs()].iter().any(|c| p.starts_with(c.as_str()) || c.starts_with(p.as_str()))
        }
        None => true,
    }
}

/// Same id and effect, whatever the XML's spelling.
fn same_effect(a: &Rule, b: &Rule) -> bool {
    Rule { xml: String::new(), ..a.clone() } == Rule { xml: String::new(), ..b.clone() }
}

/// The S3 document for `rules`.
pub fn render(rules: &[Rule]) -> String {
    let mut xml = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
         <LifecycleConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">",
    );
    rules.iter().for_each(|r| xml.push_str(&r.xml));
    xml.push_str("</LifecycleConfiguration>");
    xml
}

/// Reads the rules of a `LifecycleConfiguration` document as Garage writes
/// it (XML, entities decoded; a document type declaration is refused). Each
/// rule keeps its element as written, to be written back unchanged.
pub fn parse(xml: &str) -> Result<Vec<Rule>, String> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| format!("the answer is not an XML document: {e}"))?;
    let root = doc.root_element();
    if !root.has_tag_name("LifecycleConfiguration") {
        return Err(format!("the answer is a <{}> document, not a LifecycleConfiguration", root.tag_name().name()));
    }
    root.children().filter(|n| n.has_tag_name("Rule")).map(|rule| read_rule(xml, &rule)).collect()
}

fn read_rule(xml: &str, rule: &roxmltree::Node<'_, '_>) -> Result<Rule, String> {
    fn child<'a, 'i>(node: roxmltree::Node<'a, 'i>, name: &str) -> Option<roxmltree::Node<'a, 'i>> {
        node.children().find(|n| n.has_tag_name(name))
    }
    let text = |path: &[&str]| -> Option<String> {
        let mut node = *rule;
        for name in path {
            node = child(node, name)?;
        }
        Some(element_text(&node))
    };
    let number = |path: &[&str]| -> Result<Option<u64>, String> {
        match text(path) {
            None => Ok(None),
            Some(t) => t.parse().map(Some).map_err(|_| format!("<{}> is not a number: {t}", path[path.len() - 1])),
        }
    };
    let status = text(&["Status"]).ok_or("a rule has no <Status>")?;
    let filter = child(*rule, "Filter");
    // A prefix alone; an `<And>`, a size or a tag narrows the rule further.
    let prefix = match filter {
        Some(f) if f.children().filter(|c| c.is_element()).any(|c| !c.has_tag_name("Prefix")) => None,
        Some(f) => child(f, "Prefix").map(|p| element_text(&p)),
        None => text(&["Prefix"]),
    };
    Ok(Rule {
        id: text(&["ID"]),
        enabled: status == "Enabled",
        filtered: filter.is_some_and(|f| f.children().any(|c| c.is_element()) || !element_text(&f).is_empty())
            || text(&["Prefix"]).is_some_and(|p| !p.is_empty()),
        prefix: prefix.filter(|p| !p.is_empty()),
        expire_days: number(&["Expiration", "Days"])?,
        expire_date: text(&["Expiration", "Date"]),
        abort_days: number(&["AbortIncompleteMultipartUpload", "DaysAfterInitiation"])?,
        xml: xml[rule.range()].to_string(),
    })
}

/// Text as XML content.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// A report line's detail: what is declared, and how many others' rules are kept beside it.
pub fn describe_kept(want: &LifecycleWant, kept: usize) -> String {
    let mut detail = describe_want(want);
    if kept > 0 {
        let s = if kept == 1 { "" } else { "s" };
        detail.push_str(&format!(" ({kept} other rule{s} kept)"));
    }
    detail
}

/// Rules of ids other than garage-init's.
pub fn others(current: &[Rule]) -> usize {
    current.iter().filter(|r| !r.ours()).count()
}

/// Rules of ours that read back otherwise than this run wrote them: another
/// writer (a concurrent run with another declaration, or a person) changed
/// them in between, and Garage keeps the last writer's.
pub fn overwritten(bucket: &str, written: &[Rule], read: &[Rule]) -> crate::error::Conflict {
    let ours = |rules: &[Rule]| -> String {
        let mine: Vec<String> = rules.iter().filter(|r| r.ours()).map(Rule::describe).collect();
        if mine.is_empty() { "none of garage-init's rules".into() } else { mine.join("; ") }
    };
    crate::error::Conflict {
        message: format!(
            "lifecycle rules of bucket {bucket} were changed by someone else while this run applied them: \
             it wrote {}, and read back {}",
            ours(written),
            ours(read)
        ),
        hint: "Another garage-init run (or a person) declares other rules for this bucket, and Garage keeps \
               whichever was written last. Make the declarations agree (GARAGE_INIT_EXPIRE_AFTER_DAYS, \
               GARAGE_INIT_ABORT_INCOMPLETE_UPLOADS_AFTER_DAYS, or the spec), then run `garage-init plan` \
               to see what Garage holds."
            .into(),
    }
}

/// Every rule, as `check` and `status` show it.
pub fn describe_all(current: &[Rule]) -> Vec<String> {
    current.iter().map(Rule::describe).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What Garage gives back after garage-init wrote its pair beside someone's rule.
    const GARAGE_DOC: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><LifecycleConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
        <Rule><ID>garage-init-expire-manifests</ID><Status>Enabled</Status><Filter><Prefix>manifests/</Prefix></Filter><Expiration><Days>28</Days></Expiration></Rule>\
        <Rule><ID>logs &amp; tmp</ID><Status>Enabled</Status><Filter><Prefix>tmp/</Prefix></Filter><Expiration><Days>3</Days></Expiration></Rule>\
        <Rule><ID>garage-init-expire-blobs</ID><Status>Enabled</Status><Filter><Prefix>blobs/</Prefix></Filter><Expiration><Days>30</Days></Expiration></Rule>\
        <Rule><ID>garage-init-abort-incomplete-uploads</ID><Status>Enabled</Status><AbortIncompleteMultipartUpload><DaysAfterInitiation>1</DaysAfterInitiation></AbortIncompleteMultipartUpload></Rule>\
        </LifecycleConfiguration>";

    /// What earlier versions wrote: one rule that expires every object alike.
    const SINGLE_RULE_DOC: &str = "<LifecycleConfiguration>\
        <Rule><ID>garage-init-expire-objects</ID><Status>Enabled</Status><Expiration><Days>30</Days></Expiration></Rule>\
        <Rule><ID>logs &amp; tmp</ID><Status>Enabled</Status><Filter><Prefix>tmp/</Prefix></Filter><Expiration><Days>3</Days></Expiration></Rule>\
        <Rule><ID>garage-init-abort-incomplete-uploads</ID><Status>Enabled</Status><AbortIncompleteMultipartUpload><DaysAfterInitiation>1</DaysAfterInitiation></AbortIncompleteMultipartUpload></Rule>\
        </LifecycleConfiguration>";

    fn want(expire: Option<u32>, abort: Option<u32>) -> LifecycleWant {
        LifecycleWant {
            expire_after_days: expire,
            abort_incomplete_uploads_after_days: abort,
            layout: CacheLayout::default(),
        }
    }

    fn ids(rules: &[Rule]) -> Vec<&str> {
        rules.iter().map(|r| r.id.as_deref().unwrap_or("")).collect()
    }

    #[test]
    fn garage_documents_are_read() {
        let rules = parse(GARAGE_DOC).unwrap();
        assert_eq!(rules.len(), 4);
        assert_eq!((rules[0].prefix.as_deref(), rules[0].expire_days), (Some("manifests/"), Some(28)));
        assert_eq!(rules[1].id.as_deref(), Some("logs & tmp"));
        assert!(rules[1].filtered && rules[1].enabled);
        assert_eq!(rules[3].abort_days, Some(1));
        assert_eq!((rules[3].prefix.as_deref(), rules[3].filtered), (None, false));
        assert!(parse("<Error><Code>NoSuchBucket</Code></Error>").is_err());
        assert!(parse("<LifecycleConfiguration><Rule><Status>Enabled</Status>").is_err());
        assert!(parse("<LifecycleConfiguration><Rule><ID>x</ID></Rule></LifecycleConfiguration>").is_err());
        let bad_days = "<LifecycleConfiguration><Rule><Status>Enabled</Status><Expiration><Days>soon</Days></Expiration></Rule></LifecycleConfiguration>";
        assert!(parse(bad_days).unwrap_err().contains("<Days> is not a number"));
        // Elements nested deeper than the rule's own are not taken for its fields.
        let nested = "<LifecycleConfiguration><Rule><Status>Enabled</Status><Filter><And><Prefix>a/</Prefix></And></Filter>\
                      <NoncurrentVersionExpiration><Days>5</Days></NoncurrentVersionExpiration></Rule></LifecycleConfiguration>";
        let rules = parse(nested).unwrap();
        assert!(rules[0].filtered && rules[0].expire_days.is_none(), "{rules:?}");
        // A filter that says more than a prefix is no prefix scope.
        let and = "<LifecycleConfiguration><Rule><ID>x</ID><Status>Enabled</Status><Filter><And><Prefix>blobs/</Prefix>\
            <ObjectSizeGreaterThan>10</ObjectSizeGreaterThan></And></Filter><Expiration><Days>1</Days></Expiration></Rule>\
            </LifecycleConfiguration>";
        let rule = &parse(and).unwrap()[0];
        assert!(rule.filtered && rule.prefix.is_none(), "{rule:?}");
    }

    #[test]
    fn the_same_rules_plan_nothing_and_a_change_keeps_the_others_as_read() {
        let current = parse(GARAGE_DOC).unwrap();
        let p = plan_lifecycle(&current, &want(Some(30), Some(1)));
        assert_eq!(p.write, None);
        assert_eq!(p.kept, 1);
        // The foreign rule expires objects elsewhere than the cache: kept, no drift.
        assert_eq!(p.drift, Vec::<String>::new());
        // Under the blobs' prefix, or for every object, it is drift: never removed.
        for scope in ["<Filter><Prefix>blobs/old/</Prefix></Filter>", "<Filter></Filter>", ""] {
            let doc = GARAGE_DOC.replace("<Filter><Prefix>tmp/</Prefix></Filter>", scope);
            let p = plan_lifecycle(&parse(&doc).unwrap(), &want(Some(30), Some(1)));
            assert_eq!(p.write, None);
            assert!(
                p.drift[0].contains("rule \"logs & tmp\"") && p.drift[0].contains("expires objects after 3 days"),
                "{p:?}"
            );
        }

        let p = plan_lifecycle(&current, &want(Some(7), None));
        let written = p.write.unwrap();
        assert!(!p.creates);
        assert_eq!(ids(&written), ["logs & tmp", EXPIRE_MANIFESTS_ID, EXPIRE_BLOBS_ID]);
        let doc = render(&written);
        assert!(doc.contains("<ID>logs &amp; tmp</ID><Status>Enabled</Status><Filter><Prefix>tmp/</Prefix>"), "{doc}");
        let back = parse(&doc).unwrap();
        assert_eq!((back[1].expire_days, back[2].expire_days), (Some(5), Some(7)));
    }

    #[test]
    fn the_single_rule_of_earlier_versions_is_replaced_by_the_pair_and_others_are_kept() {
        let current = parse(SINGLE_RULE_DOC).unwrap();
        let p = plan_lifecycle(&current, &want(Some(30), Some(1)));
        assert!(!p.creates, "an update: garage-init had rules there");
        assert_eq!(p.kept, 1);
        let written = p.write.unwrap();
        assert_eq!(ids(&written), ["logs & tmp", EXPIRE_MANIFESTS_ID, EXPIRE_BLOBS_ID, ABORT_ID]);
        // Once written, what Garage gives back plans nothing.
        assert_eq!(plan_lifecycle(&parse(&render(&written)).unwrap(), &want(Some(30), Some(1))).write, None);
        // Turning expiry off removes the old rule too.
        let off = plan_lifecycle(&current, &want(None, Some(1))).write.unwrap();
        assert_eq!(ids(&off), ["logs & tmp", ABORT_ID]);
    }

    #[test]
    fn a_bucket_without_rules_gets_ours_and_turning_them_off_removes_only_ours() {
        let p = plan_lifecycle(&[], &want(Some(30), Some(1)));
        assert!(p.creates);
        let doc = render(p.write.as_ref().unwrap());
        let back = parse(&doc).unwrap();
        assert_eq!(ids(&back), [EXPIRE_MANIFESTS_ID, EXPIRE_BLOBS_ID, ABORT_ID]);
        assert_eq!(back[0].prefix.as_deref(), Some("manifests/"));
        assert_eq!(back[1].prefix.as_deref(), Some("blobs/"));
        assert_eq!(plan_lifecycle(&back, &want(Some(30), Some(1))).write, None);

        assert_eq!(plan_lifecycle(&back, &want(None, None)).write, Some(vec![]));
        assert_eq!(plan_lifecycle(&[], &want(None, None)).write, None);
    }

    #[test]
    fn the_rules_follow_the_cache_layout_and_its_prefixes_are_escaped() {
        let mut w = want(Some(30), None);
        w.layout = CacheLayout { prefix: "a&b/".into(), manifests_prefix: "m/".into(), blobs_prefix: "b/".into() };
        let doc = render(&wanted_rules(&w));
        assert!(doc.contains("<Filter><Prefix>a&amp;b/m/</Prefix></Filter>"), "{doc}");
        let back = parse(&doc).unwrap();
        assert_eq!(back[0].prefix.as_deref(), Some("a&b/m/"));
        assert_eq!(plan_lifecycle(&back, &w).write, None);
        // Another layout is another rule.
        assert!(plan_lifecycle(&back, &want(Some(30), None)).write.is_some());
    }

    #[test]
    fn a_rule_of_ours_edited_by_hand_is_written_back() {
        let edited = GARAGE_DOC.replace("<Days>30</Days>", "<Days>90</Days>");
        let p = plan_lifecycle(&parse(&edited).unwrap(), &want(Some(30), Some(1)));
        assert!(p.write.is_some() && !p.creates);
        let unscoped = GARAGE_DOC.replace("<Filter><Prefix>blobs/</Prefix></Filter>", "");
        assert!(plan_lifecycle(&parse(&unscoped).unwrap(), &want(Some(30), Some(1))).write.is_some());
    }

    #[test]
    fn wants_read_as_sentences() {
        assert_eq!(
            describe_want(&want(Some(30), Some(1))),
            "blobs expire after 30 days and manifests after 28, incomplete uploads are aborted after 1 day"
        );
        assert_eq!(describe_want(&want(None, None)), "no expiry rules, no rule for incomplete uploads");
        let mut w = want(Some(3), None);
        w.layout.prefix = "ci/".into();
        assert_eq!(
            describe_want(&w),
            "blobs (ci/blobs/) expire after 3 days and manifests (ci/manifests/) after 1, no rule for incomplete uploads"
        );
    }
}
