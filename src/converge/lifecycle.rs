//! A bucket's lifecycle rules: what Garage holds (the S3
//! `LifecycleConfiguration` document), what garage-init wants there, and the
//! decision between the two. Pure: the S3 reads and writes are in
//! [`crate::s3check`].
//!
//! garage-init owns the rules whose id it writes ([`EXPIRE_ID`],
//! [`ABORT_ID`]); every other rule is someone else's and is written back as
//! Garage gave it, byte for byte. A rule of another id that acts like one of
//! ours (it also expires objects, or also aborts uploads) is reported as
//! drift: both apply, and the earlier one wins.

use crate::desired::LifecycleWant;
use crate::s3check::element_text;

/// Id of the rule that expires objects.
pub const EXPIRE_ID: &str = "garage-init-expire-objects";
/// Id of the rule that aborts incomplete multipart uploads.
pub const ABORT_ID: &str = "garage-init-abort-incomplete-uploads";

/// One rule of a bucket's lifecycle configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub id: Option<String>,
    pub enabled: bool,
    /// Whether a filter narrows the rule (a prefix or an object size).
    pub filtered: bool,
    pub expire_days: Option<u64>,
    pub expire_date: Option<String>,
    pub abort_days: Option<u64>,
    /// The `<Rule>…</Rule>` element as read, written back unchanged.
    xml: String,
}

impl Rule {
    fn ours(&self) -> bool {
        matches!(self.id.as_deref(), Some(EXPIRE_ID | ABORT_ID))
    }

    fn new(id: &str, expire_days: Option<u32>, abort_days: Option<u32>) -> Self {
        let mut xml = format!("<Rule><ID>{id}</ID><Status>Enabled</Status>");
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
            filtered: false,
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
        let scope = if self.filtered { " (for some objects)" } else { "" };
        let state = if self.enabled { "" } else { ", disabled" };
        format!("rule \"{}\"{scope} {}{state}", self.id.as_deref().unwrap_or("(no id)"), acts.join(" and "))
    }
}

fn days(n: u64) -> String {
    if n == 1 { "1 day".into() } else { format!("{n} days") }
}

/// The rules garage-init wants for `want`, ours only.
pub fn wanted_rules(want: &LifecycleWant) -> Vec<Rule> {
    let mut rules = Vec::new();
    if let Some(d) = want.expire_after_days {
        rules.push(Rule::new(EXPIRE_ID, Some(d), None));
    }
    if let Some(d) = want.abort_incomplete_uploads_after_days {
        rules.push(Rule::new(ABORT_ID, None, Some(d)));
    }
    rules
}

/// "objects expire after 30 days, incomplete uploads are aborted after 1 day".
pub fn describe_want(want: &LifecycleWant) -> String {
    let mut parts = Vec::new();
    match want.expire_after_days {
        Some(d) => parts.push(format!("objects expire after {}", days(d.into()))),
        None => parts.push("no expiry rule".into()),
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
        let clashes = (expires && want.expire_after_days.is_some())
            || (other.abort_days.is_some() && want.abort_incomplete_uploads_after_days.is_some());
        if clashes {
            drift.push(format!("{} (not garage-init's; kept, and Garage applies both)", other.describe()));
        }
    }
    let write = (!same).then(|| others.iter().map(|r| (*r).clone()).chain(wanted).collect());
    LifecyclePlan { write, creates: ours.is_empty(), kept: others.len(), drift }
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
    let text = |path: &[&str]| -> Option<String> {
        let mut node = *rule;
        for name in path {
            node = node.children().find(|n| n.has_tag_name(*name))?;
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
    let filter = rule.children().find(|n| n.has_tag_name("Filter"));
    Ok(Rule {
        id: text(&["ID"]),
        enabled: status == "Enabled",
        filtered: filter.is_some_and(|f| f.children().any(|c| c.is_element()) || !element_text(&f).is_empty())
            || text(&["Prefix"]).is_some_and(|p| !p.is_empty()),
        expire_days: number(&["Expiration", "Days"])?,
        expire_date: text(&["Expiration", "Date"]),
        abort_days: number(&["AbortIncompleteMultipartUpload", "DaysAfterInitiation"])?,
        xml: xml[rule.range()].to_string(),
    })
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
pub fn overwritten(bucket: &str, written: &[Rule], read: &[Rule]) -> crate::converge::plan::Conflict {
    let ours = |rules: &[Rule]| -> String {
        let mine: Vec<String> = rules.iter().filter(|r| r.ours()).map(Rule::describe).collect();
        if mine.is_empty() { "none of garage-init's rules".into() } else { mine.join("; ") }
    };
    crate::converge::plan::Conflict {
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

    const GARAGE_DOC: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><LifecycleConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
        <Rule><ID>garage-init-expire-objects</ID><Status>Enabled</Status><Expiration><Days>30</Days></Expiration></Rule>\
        <Rule><ID>logs &amp; tmp</ID><Status>Enabled</Status><Filter><Prefix>tmp/</Prefix></Filter><Expiration><Days>3</Days></Expiration></Rule>\
        <Rule><ID>garage-init-abort-incomplete-uploads</ID><Status>Enabled</Status><AbortIncompleteMultipartUpload><DaysAfterInitiation>1</DaysAfterInitiation></AbortIncompleteMultipartUpload></Rule>\
        </LifecycleConfiguration>";

    fn want(expire: Option<u32>, abort: Option<u32>) -> LifecycleWant {
        LifecycleWant { expire_after_days: expire, abort_incomplete_uploads_after_days: abort }
    }

    #[test]
    fn garage_documents_are_read() {
        let rules = parse(GARAGE_DOC).unwrap();
        assert_eq!(rules.len(), 3);
        assert_eq!(rules[0].expire_days, Some(30));
        assert_eq!(rules[1].id.as_deref(), Some("logs & tmp"));
        assert!(rules[1].filtered && rules[1].enabled);
        assert_eq!(rules[2].abort_days, Some(1));
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
    }

    #[test]
    fn the_same_rules_plan_nothing_and_a_change_keeps_the_others_as_read() {
        let current = parse(GARAGE_DOC).unwrap();
        let p = plan_lifecycle(&current, &want(Some(30), Some(1)));
        assert_eq!(p.write, None);
        assert_eq!(p.kept, 1);
        // The foreign rule also expires objects: drift, never removed.
        assert!(p.drift[0].contains("rule \"logs & tmp\" (for some objects) expires objects after 3 days"), "{p:?}");

        let p = plan_lifecycle(&current, &want(Some(7), None));
        let written = p.write.unwrap();
        assert!(!p.creates);
        assert_eq!(written.len(), 2);
        let doc = render(&written);
        assert!(doc.contains("<ID>logs &amp; tmp</ID><Status>Enabled</Status><Filter><Prefix>tmp/</Prefix>"), "{doc}");
        assert_eq!(parse(&doc).unwrap()[1].expire_days, Some(7));
    }

    #[test]
    fn a_bucket_without_rules_gets_ours_and_turning_them_off_removes_only_ours() {
        let p = plan_lifecycle(&[], &want(Some(30), Some(1)));
        assert!(p.creates);
        let doc = render(p.write.as_ref().unwrap());
        let back = parse(&doc).unwrap();
        assert_eq!(back.iter().map(|r| r.id.clone().unwrap()).collect::<Vec<_>>(), [EXPIRE_ID, ABORT_ID]);
        assert_eq!(plan_lifecycle(&back, &want(Some(30), Some(1))).write, None);

        assert_eq!(plan_lifecycle(&back, &want(None, None)).write, Some(vec![]));
        assert_eq!(plan_lifecycle(&[], &want(None, None)).write, None);
    }

    #[test]
    fn a_rule_of_ours_edited_by_hand_is_written_back() {
        let edited = GARAGE_DOC.replace("<Days>30</Days>", "<Days>90</Days>");
        let p = plan_lifecycle(&parse(&edited).unwrap(), &want(Some(30), Some(1)));
        assert!(p.write.is_some() && !p.creates);
    }

    #[test]
    fn wants_read_as_sentences() {
        assert_eq!(
            describe_want(&want(Some(30), Some(1))),
            "objects expire after 30 days, incomplete uploads are aborted after 1 day"
        );
        assert_eq!(describe_want(&want(None, None)), "no expiry rule, no rule for incomplete uploads");
    }
}
