//! `nightdesk check` for a rules folder: every rule compiles (reason codes and message
//! types included), every template compiles and uses only known placeholders, every
//! template a rule names exists, and every template passes the marketplace's compliance
//! linter. It reads files and reports; it changes nothing.

use std::path::Path;
use std::sync::LazyLock;

use regex::Regex;

use super::compliance::{self, Check, MessageKind, Policy};
use super::templates::{CONTEXT_OBJECTS, CONTEXT_PATHS, Templates};
use super::{RuleEngine, RuleSet};

/// What the check found: lines for people, and whether anything is wrong.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CheckReport {
    pub ok: Vec<String>,
    pub problems: Vec<String>,
}

static TEMPLATE_REFERENCE: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r#"\b(?:reply\s*\([^,()]+,|notify_buyer\s*\([^,()]+,\s*"[^"]*"\s*,)\s*"([^"]*)""#)
        .ok()
});

/// Template names a rule's source names literally, with their 1-based lines.
pub fn template_references(source: &str) -> Vec<(usize, String)> {
    let Some(pattern) = TEMPLATE_REFERENCE.as_ref() else {
        return Vec::new();
    };
    pattern
        .captures_iter(source)
        .filter_map(|c| c.get(1))
        .map(|m| {
            (
                source[..m.start()].matches('\n').count() + 1,
                m.as_str().to_owned(),
            )
        })
        .collect()
}

/// Template syntax replaced by neutral text of the same line structure, so the linter
/// judges what the seller wrote and reports the template's own lines.
fn without_template_syntax(source: &str) -> String {
    static TAGS: LazyLock<Option<Regex>> =
        LazyLock::new(|| Regex::new(r"(?s)\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}").ok());
    let Some(tags) = TAGS.as_ref() else {
        return source.to_owned();
    };
    tags.replace_all(source, |c: &regex::Captures| {
        let newlines = c[0].matches('\n').count();
        format!("value{}", "\n".repeat(newlines))
    })
    .into_owned()
}

/// Lint one template file's text as a buyer reply; length is judged when a message is
/// rendered, since placeholders change it.
pub fn lint_template(source: &str) -> Vec<compliance::Violation> {
    compliance::lint(
        &without_template_syntax(source),
        Policy::Amazon,
        MessageKind::BuyerReply,
    )
    .into_iter()
    .filter(|v| v.check != Check::Length)
    .collect()
}

/// Check the rules folder `dir` and its `templates/` folder; the rules and templates
/// come back when they loaded (whether or not other checks found problems).
pub fn check_dir(
    engine: &RuleEngine,
    dir: &Path,
) -> (CheckReport, Option<RuleSet>, Option<Templates>) {
    let mut report = CheckReport::default();
    let rules = match engine.load_dir(dir) {
        Ok(rules) => {
            for rule in &rules.rules {
                report.ok.push(format!(
                    "{}: rule {} ok (version {})",
                    rule.path.display(),
                    rule.name,
                    rule.version
                ));
            }
            Some(rules)
        }
        Err(errors) => {
            report.problems.extend(errors.iter().map(|e| e.to_string()));
            None
        }
    };
    let template_dir = dir.join("templates");
    let templates = match Templates::load_dir(&template_dir) {
        Ok(templates) => {
            report.problems.extend(
                templates
                    .unknown_placeholders(CONTEXT_PATHS, CONTEXT_OBJECTS)
                    .iter()
                    .map(|e| e.to_string()),
            );
            Some(templates)
        }
        Err(errors) => {
            report.problems.extend(errors.iter().map(|e| e.to_string()));
            None
        }
    };
    // Lint every template file as written.
    let mut files: Vec<_> = std::fs::read_dir(&template_dir)
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|x| x == "txt"));
    files.sort();
    let mut clean = 0;
    for file in &files {
        let Ok(source) = std::fs::read_to_string(file) else {
            continue;
        };
        let violations = lint_template(&source);
        if violations.is_empty() {
            clean += 1;
        }
        for v in violations {
            report.problems.push(format!(
                "{}:{}: {} ({}): {:?}",
                file.display(),
                v.line,
                v.message,
                v.check,
                v.excerpt
            ));
        }
    }
    if !files.is_empty() {
        report.ok.push(format!(
            "{}: {clean} of {} template files pass the Amazon compliance linter",
            template_dir.display(),
            files.len()
        ));
    }
    // Every template a rule names must exist.
    if let (Some(rules), Some(templates)) = (&rules, &templates) {
        for rule in &rules.rules {
            let Ok(source) = std::fs::read_to_string(&rule.path) else {
                continue;
            };
            for (line, name) in template_references(&source) {
                if !templates.has(&name) {
                    report.problems.push(format!(
                        "{}:{line}: no template {name:?} in {}",
                        rule.path.display(),
                        template_dir.display()
                    ));
                }
            }
        }
    }
    (report, rules, templates)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_references_are_found_with_their_lines() {
        let source = "fn on_buyer_message(msg) {\n  reply(msg, \"pending_order\");\n  notify_buyer(msg.order, \"unexpectedProblem\", \"shipping_exception\");\n}";
        assert_eq!(
            template_references(source),
            vec![
                (2, "pending_order".to_owned()),
                (3, "shipping_exception".to_owned())
            ]
        );
    }

    #[test]
    fn template_syntax_is_neutral_and_lines_are_kept() {
        let source = "Hello,\n{% if order %}Your order {{ order.id }}{% endif %}\nVisit https://mystore.example/deals for more.\n";
        let violations = lint_template(source);
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert_eq!((violations[0].check, violations[0].line), (Check::Link, 3));
    }

    #[test]
    fn a_carrier_link_placeholder_is_fine() {
        let source = "Your parcel is on its way: {{ shipment.tracking_url }}\nKind regards\n";
        assert!(lint_template(source).is_empty());
    }
}
