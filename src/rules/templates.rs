//! Buyer message templates: the texts that rules ask the daemon to send to buyers, one file
//! per template and language in `rules/templates/` (`NAME.LANG.txt`, e.g.
//! `pending_order.de.txt`), compiled with MiniJinja.
//!
//! The daemon renders a template with the state of the subject (`order`, `shipment`,
//! `message`, `refund`; see [`CONTEXT_PATHS`]) in the buyer's language, falling back to
//! English. Templates are plain text that goes to buyers by e-mail or the Amazon Messaging
//! API, so this module must never:
//! - do I/O beyond reading the template folder (filters are pure, no loader, no includes
//!   from disk);
//! - HTML-escape (auto-escaping is off: `&` must stay `&` in a plain-text e-mail);
//! - render unbounded: every render has a fuel budget ([`FUEL`]) and an output cap
//!   ([`MAX_OUTPUT_BYTES`]), so a template cannot spin or balloon;
//! - render leniently: undefined values are errors ([`UndefinedBehavior::Strict`]), so a
//!   misspelt placeholder fails loudly instead of sending a message with a hole in it.
//!
//! Compliance with marketplace messaging policy is checked elsewhere (the compliance
//! linter runs on every rendered message); this module only renders.
//!
//! # Syntax
//! Jinja (MiniJinja) with `trim_blocks` and `lstrip_blocks`: a line holding only a block tag
//! (`{% if … %}`) leaves nothing behind. After rendering, trailing whitespace is cut from
//! every line, runs of blank lines become one, and leading/trailing blank lines go.
//!
//! # Render context
//! Whatever the caller passes (a JSON object), plus:
//! - `_lang`: the language actually used (after the English fallback);
//! - `_tz`: the IANA time zone for dates, from `order.marketplace` via
//!   [`timezone_for_marketplace`], unless the caller already set `_tz`.
//!
//! # Filters
//! - `date`: an ISO 8601 date or timestamp (`2026-11-13` or `2026-11-13T08:00:00Z`) as a
//!   long date in the language of `_lang`, converted to the zone `_tz` when set: en
//!   "November 13, 2026" (American zones, or no zone) or "13 November 2026" (elsewhere),
//!   de "13. November 2026", fr "13 novembre 2026" ("1er novembre"), es "13 de noviembre
//!   de 2026", it "13 novembre 2026", nl/sv "13 november 2026", pl "13 listopada 2026",
//!   tr "13 Kasım 2026", pt "13 de novembro de 2026", ja "2026年11月13日"; other languages get
//!   "2026-11-13". `{{ order.latest_delivery_date|date }}`.
//! - `money`: `{amount, currency}` (amount a decimal string or number) in the style of
//!   `_lang`: en "$24.99" / "£24.99" / "€24.99", de/es/it "24,99 €", fr "24,99 €"
//!   ("1 234,50 €"), nl "€ 24,99", sv "24,99 kr", pl "24,99 zł", tr "₺24,99", ja "￥2,499",
//!   pt "R$ 24,99"; a currency without a well-known symbol shows its ISO code ("AED 24.99").
//!   A bare amount takes the currency as argument: `{{ 24.99|money("EUR") }}`.
//!   `{{ refund.amount|money }}`.
//!
//! Both filters fail (rather than guess) on a value they cannot read, such as `none`:
//! guard nullable fields with `{% if … %}`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::path::Path;

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime};
use chrono_tz::Tz;
use minijinja::syntax::SyntaxConfig;
use minijinja::value::Serde;
use minijinja::{AutoEscape, Environment, ErrorKind, State, UndefinedBehavior, Value};
use sha2::{Digest, Sha256};

/// Instructions one render may execute. A long message with a loop over a few dozen items
/// needs a few thousand; a runaway loop hits this within milliseconds.
pub const FUEL: u64 = 100_000;

/// Largest rendered message. Marketplace limits are far lower (Amazon: 2000 characters);
/// this bound only stops a template from building huge strings.
pub const MAX_OUTPUT_BYTES: usize = 64 * 1024;

/// Largest template file read; a bigger file is a mistake, not a message.
pub const MAX_FILE_BYTES: u64 = 64 * 1024;

/// The language every template must exist in, and the fallback for all others.
pub const FALLBACK_LANGUAGE: &str = "en";

/// Placeholder paths of the context the daemon renders with (for
/// [`Templates::unknown_placeholders`]). Every key is always present; values may be
/// `none` (`shipment`, `message`, `refund`, dates, `order.total`, shipment details).
/// `buyer` is restricted data: fetched (Amazon: with a Restricted Data Token) only
/// when the template reads it, and `none` when the marketplace does not give it.
pub const CONTEXT_PATHS: &[&str] = &[
    "order.language",
    "order.timezone",
    "order.id",
    "order.channel",
    "order.marketplace",
    "order.status",
    "order.fulfillment",
    "order.purchase_date",
    "order.last_update",
    "order.status_since",
    "order.latest_ship_date",
    "order.latest_delivery_date",
    "order.age_days",
    "order.days_in_status",
    "order.pending_days",
    "order.buyer_requested_cancel",
    "order.is_prime",
    "order.is_business",
    "order.order_type",
    "order.total",
    "order.items",
    "shipment.carrier",
    "shipment.tracking_number",
    "shipment.tracking_url",
    "shipment.status",
    "shipment.status_text",
    "shipment.last_event_at",
    "shipment.last_event_location",
    "shipment.estimated_delivery",
    "message.subject",
    "message.order_id_found",
    "message.tracking_number_found",
    "refund.amount",
    "buyer.name",
    "buyer.first_name",
];

/// Context values that are whole objects: any path below them is accepted.
pub const CONTEXT_OBJECTS: &[&str] = &["order.total", "order.items", "refund.amount"];

/// Set by [`Templates::render`] for the filters; always known.
const RENDER_VARIABLES: &[&str] = &["_lang", "_tz"];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// The folder or a file could not be read.
    #[error("{path}: {reason}")]
    Read { path: String, reason: String },
    /// A file in the template folder whose name is not `NAME.LANG.txt`.
    #[error("{file}: {reason}")]
    FileName { file: String, reason: String },
    /// The template does not compile (or is empty).
    #[error("{}: {message}", at(file, *line))]
    Syntax {
        file: String,
        line: Option<usize>,
        message: String,
    },
    /// A template without the English variant every other language falls back to.
    #[error(
        "{file}: template {name} has no English variant {name}.en.txt, the fallback for every other language"
    )]
    MissingFallback { name: String, file: String },
    /// No template of that name (or no variant to fall back to).
    #[error("no template {name:?} in {language:?} or English")]
    Unknown { name: String, language: String },
    /// Rendering failed: an undefined variable, a filter given a value it cannot read, …
    #[error("{}: {message}", at(file, *line))]
    Render {
        file: String,
        line: Option<usize>,
        message: String,
    },
    /// Rendering ran past its fuel or output limit.
    #[error("{}: {message}", at(file, *line))]
    Limit {
        file: String,
        line: Option<usize>,
        message: String,
    },
    /// A placeholder that the render context does not provide.
    #[error("{}: unknown placeholder {path}", at(file, *line))]
    UnknownPlaceholder {
        file: String,
        line: Option<usize>,
        path: String,
    },
}

fn at(file: &str, line: Option<usize>) -> String {
    match line {
        Some(line) => format!("{file}:{line}"),
        None => file.to_owned(),
    }
}

/// A rendered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub text: String,
    /// The language of the variant used (the requested one or the English fallback).
    pub language: String,
    /// The file it came from, as shown in errors (e.g. `rules/templates/x.de.txt`).
    pub template_file: String,
}

#[derive(Debug, Clone)]
struct Variant {
    /// The name MiniJinja knows it by: the file name.
    key: String,
    /// The file as shown to people.
    file: String,
}

/// Every template of a folder, compiled. Immutable; share it behind an `Arc`.
#[derive(Clone)]
pub struct Templates {
    env: Environment<'static>,
    /// name → language → variant.
    variants: BTreeMap<String, BTreeMap<String, Variant>>,
    version: String,
}

impl fmt::Debug for Templates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Templates")
            .field("templates", &self.variants.keys().collect::<Vec<_>>())
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// One file to compile: its bare name, how it is shown, its text.
struct Source {
    file_name: String,
    shown: String,
    text: String,
}

impl Templates {
    /// Load and compile every template of `dir`; every error at once. A folder that does
    /// not exist is an empty set; any other read error is an error.
    pub fn load_dir(dir: &Path) -> Result<Templates, Vec<TemplateError>> {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Templates::build(Vec::new(), Vec::new());
            }
            Err(e) => {
                return Err(vec![TemplateError::Read {
                    path: dir.display().to_string(),
                    reason: e.to_string(),
                }]);
            }
        };
        let mut sources = Vec::new();
        let mut errors = Vec::new();
        let mut paths = Vec::new();
        for entry in entries {
            match entry {
                Ok(entry) => paths.push(entry.path()),
                Err(e) => errors.push(TemplateError::Read {
                    path: dir.display().to_string(),
                    reason: e.to_string(),
                }),
            }
        }
        paths.sort();
        for path in paths {
            let shown = path.display().to_string();
            let Some(file_name) = path.file_name().and_then(|n| n.to_str()) else {
                errors.push(TemplateError::FileName {
                    file: shown,
                    reason: "the file name is not valid UTF-8".into(),
                });
                continue;
            };
            if is_ignored(file_name) {
                continue;
            }
            if let Err(reason) = parse_file_name(file_name) {
                errors.push(TemplateError::FileName {
                    file: shown,
                    reason,
                });
                continue;
            }
            match read_template(&path) {
                Ok(text) => sources.push(Source {
                    file_name: file_name.to_owned(),
                    shown,
                    text,
                }),
                Err(reason) => errors.push(TemplateError::Read {
                    path: shown,
                    reason,
                }),
            }
        }
        Templates::build(sources, errors)
    }

    /// For tests and fixtures: build from (file name, text) pairs.
    pub fn from_sources(sources: &[(&str, &str)]) -> Result<Templates, Vec<TemplateError>> {
        let mut errors = Vec::new();
        let mut seen = BTreeSet::new();
        let mut list = Vec::new();
        for (file_name, text) in sources {
            if is_ignored(file_name) {
                continue;
            }
            if let Err(reason) = parse_file_name(file_name) {
                errors.push(TemplateError::FileName {
                    file: (*file_name).to_owned(),
                    reason,
                });
                continue;
            }
            if !seen.insert(*file_name) {
                errors.push(TemplateError::FileName {
                    file: (*file_name).to_owned(),
                    reason: "given twice".into(),
                });
                continue;
            }
            list.push(Source {
                file_name: (*file_name).to_owned(),
                shown: (*file_name).to_owned(),
                text: (*text).to_owned(),
            });
        }
        list.sort_by(|a, b| a.file_name.cmp(&b.file_name));
        Templates::build(list, errors)
    }

    fn build(
        sources: Vec<Source>,
        mut errors: Vec<TemplateError>,
    ) -> Result<Templates, Vec<TemplateError>> {
        let mut env = new_environment();
        let mut variants: BTreeMap<String, BTreeMap<String, Variant>> = BTreeMap::new();
        let mut hasher = Sha256::new();
        for source in sources {
            // Names were checked by the callers; a failure here would be a bug, reported
            // as a file name error rather than a panic.
            let (name, language) = match parse_file_name(&source.file_name) {
                Ok((name, language)) => (name.to_owned(), language.to_owned()),
                Err(reason) => {
                    errors.push(TemplateError::FileName {
                        file: source.shown,
                        reason,
                    });
                    continue;
                }
            };
            hasher.update(source.file_name.as_bytes());
            hasher.update([0]);
            hasher.update(source.text.as_bytes());
            hasher.update([0]);
            if source.text.trim().is_empty() {
                errors.push(TemplateError::Syntax {
                    file: source.shown,
                    line: None,
                    message: "the template is empty".into(),
                });
                continue;
            }
            if let Err(e) = env.add_template_owned(source.file_name.clone(), source.text) {
                errors.push(TemplateError::Syntax {
                    file: source.shown,
                    line: e.line(),
                    message: describe(&e),
                });
                continue;
            }
            variants.entry(name).or_default().insert(
                language,
                Variant {
                    key: source.file_name,
                    file: source.shown,
                },
            );
        }
        for (name, languages) in &variants {
            if !languages.contains_key(FALLBACK_LANGUAGE)
                && let Some(variant) = languages.values().next()
            {
                errors.push(TemplateError::MissingFallback {
                    name: name.clone(),
                    file: variant.file.clone(),
                });
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Templates {
            env,
            variants,
            version: hex::encode(&hasher.finalize()[..6]),
        })
    }

    /// Template names, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.variants.keys().map(String::as_str).collect()
    }

    /// The languages a template exists in, sorted (empty for an unknown name).
    pub fn languages(&self, name: &str) -> Vec<&str> {
        self.variants
            .get(name)
            .map(|l| l.keys().map(String::as_str).collect())
            .unwrap_or_default()
    }

    pub fn has(&self, name: &str) -> bool {
        self.variants.contains_key(name)
    }

    /// Render NAME in `language` (an ISO 639-1 code; a locale such as `de-DE` or `de_DE`
    /// is taken by its language), falling back to English when that variant is missing.
    /// Strict: a missing variable is an error naming the template file and line.
    /// Rendering is bounded by [`FUEL`] and [`MAX_OUTPUT_BYTES`].
    pub fn render(
        &self,
        name: &str,
        language: &str,
        context: &serde_json::Value,
    ) -> Result<Rendered, TemplateError> {
        let requested = normalize_language(language);
        let unknown = || TemplateError::Unknown {
            name: name.to_owned(),
            language: requested.clone(),
        };
        let languages = self.variants.get(name).ok_or_else(unknown)?;
        let (used, variant) = match languages.get_key_value(&requested) {
            Some(found) => found,
            None => {
                let found = languages
                    .get_key_value(FALLBACK_LANGUAGE)
                    .ok_or_else(unknown)?;
                tracing::debug!(template = name, requested = %requested, "No variant in this language; using English.");
                found
            }
        };
        let render_error = |e: &minijinja::Error| {
            let line = e.line();
            let file = variant.file.clone();
            match e.kind() {
                ErrorKind::OutOfFuel => TemplateError::Limit {
                    file,
                    line,
                    message: format!(
                        "rendering ran out of fuel ({FUEL} instructions): the template loops too much"
                    ),
                },
                _ => TemplateError::Render {
                    file,
                    line,
                    message: describe(e),
                },
            }
        };
        let mut root = match context {
            serde_json::Value::Object(map) => map.clone(),
            serde_json::Value::Null => serde_json::Map::new(),
            other => {
                return Err(TemplateError::Render {
                    file: variant.file.clone(),
                    line: None,
                    message: format!("the render context must be an object, not {other}"),
                });
            }
        };
        root.insert("_lang".into(), serde_json::Value::String(used.clone()));
        if !root.contains_key("_tz")
            && let Some(marketplace) = root
                .get("order")
                .and_then(|o| o.get("marketplace"))
                .and_then(serde_json::Value::as_str)
        {
            let tz = timezone_for_marketplace(marketplace);
            root.insert("_tz".into(), serde_json::Value::String(tz.name().into()));
        }
        let template = self
            .env
            .get_template(&variant.key)
            .map_err(|e| render_error(&e))?;
        let mut out = CappedWriter::default();
        let rendered = template.render_captured_to(Value::from(Serde(&root)), &mut out);
        if out.exceeded {
            return Err(TemplateError::Limit {
                file: variant.file.clone(),
                line: None,
                message: format!("the message grew past {MAX_OUTPUT_BYTES} bytes"),
            });
        }
        rendered.map_err(|e| render_error(&e))?;
        let raw = String::from_utf8(out.buf).map_err(|e| TemplateError::Render {
            file: variant.file.clone(),
            line: None,
            message: e.to_string(),
        })?;
        let text = tidy(&raw);
        if text.is_empty() {
            return Err(TemplateError::Render {
                file: variant.file.clone(),
                line: None,
                message: "the template rendered an empty message".into(),
            });
        }
        Ok(Rendered {
            text,
            language: used.clone(),
            template_file: variant.file.clone(),
        })
    }

    /// Every placeholder path a template uses that the context does not provide: a path is
    /// fine if it is in `known`, if it is a prefix of a known path (`order` when
    /// `order.id` is known: the object itself), or if it or a prefix of it is in
    /// `known_objects` (`order.total.amount` when `order.total` is listed). Variables the
    /// template sets itself, loop variables, MiniJinja's globals (`range`, …) and `_lang` /
    /// `_tz` are always fine. The analysis is static: it sees both branches of an `if`.
    pub fn unknown_placeholders(
        &self,
        known: &[&str],
        known_objects: &[&str],
    ) -> Vec<TemplateError> {
        let globals: BTreeSet<String> = self.env.globals().map(|(n, _)| n.to_owned()).collect();
        let mut errors = Vec::new();
        for languages in self.variants.values() {
            for variant in languages.values() {
                let Ok(template) = self.env.get_template(&variant.key) else {
                    continue;
                };
                let mut paths: Vec<String> =
                    template.undeclared_variables(true).into_iter().collect();
                paths.sort();
                for path in paths {
                    let root = path.split('.').next().unwrap_or(&path);
                    if globals.contains(root)
                        || RENDER_VARIABLES.contains(&root)
                        || is_known(&path, known, known_objects)
                    {
                        continue;
                    }
                    errors.push(TemplateError::UnknownPlaceholder {
                        file: variant.file.clone(),
                        line: find_line(template.source(), &path),
                        path,
                    });
                }
            }
        }
        errors
    }

    /// Whether any language variant of template `name` reads a placeholder under
    /// `root` (e.g. `buyer`), so restricted data is fetched only for messages that
    /// show it.
    pub fn reads(&self, name: &str, root: &str) -> bool {
        let Some(languages) = self.variants.get(name) else {
            return false;
        };
        languages.values().any(|variant| {
            self.env.get_template(&variant.key).is_ok_and(|template| {
                template
                    .undeclared_variables(true)
                    .iter()
                    .any(|path| path.split('.').next() == Some(root))
            })
        })
    }

    /// A content hash of the whole set (file names and texts): 12 hex digits, recorded with
    /// every message to say which version of the templates wrote it.
    pub fn version(&self) -> String {
        self.version.clone()
    }
}

fn new_environment() -> Environment<'static> {
    let mut env = Environment::new();
    // Default delimiters always build; should that ever change, the defaults (no block
    // trimming) only cost some blank lines, which `tidy` removes anyway.
    if let Ok(syntax) = SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .keep_trailing_newline(false)
        .build()
    {
        env.set_syntax(syntax);
    }
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    env.add_filter("date", date_filter);
    env.add_filter("money", money_filter);
    env
}

/// A MiniJinja error without its " (in file:line)" suffix: we name the file ourselves.
fn describe(e: &minijinja::Error) -> String {
    match e.detail() {
        Some(detail) => format!("{}: {detail}", e.kind()),
        None => e.kind().to_string(),
    }
}

fn is_known(path: &str, known: &[&str], known_objects: &[&str]) -> bool {
    let under = |prefix: &str, path: &str| {
        path == prefix
            || path
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('.'))
    };
    known.contains(&path)
        || known.iter().any(|k| under(path, k))
        || known_objects.iter().any(|o| under(o, path))
}

/// The first line whose text mentions `path` as a whole word, for pointing at a placeholder.
fn find_line(source: &str, path: &str) -> Option<usize> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '.';
    source.lines().enumerate().find_map(|(i, line)| {
        line.match_indices(path)
            .any(|(pos, _)| {
                let before = line[..pos].chars().next_back();
                let after = line[pos + path.len()..].chars().next();
                !before.is_some_and(word) && !after.is_some_and(|c| word(c) && c != '.')
            })
            .then_some(i + 1)
    })
}

/// README files and dotfiles (editor swap files, `.gitkeep`) live beside templates.
fn is_ignored(file_name: &str) -> bool {
    let lower = file_name.to_ascii_lowercase();
    file_name.starts_with('.') || lower == "readme" || lower.starts_with("readme.")
}

/// `NAME.LANG.txt` → (NAME, LANG), or why not.
fn parse_file_name(file_name: &str) -> Result<(&str, &str), String> {
    let expected = "expected NAME.LANG.txt, e.g. pending_order.en.txt";
    let Some(stem) = file_name.strip_suffix(".txt") else {
        return Err(format!("not a template file name ({expected})"));
    };
    let Some((name, language)) = stem.rsplit_once('.') else {
        return Err(format!("the language is missing ({expected})"));
    };
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(format!(
            "the template name {name:?} may use only a-z, 0-9 and _ ({expected})"
        ));
    }
    if !ISO_639_1.contains(&language) {
        let hint = COUNTRY_NOT_LANGUAGE
            .iter()
            .find(|(country, _)| *country == language)
            .map(|(_, lang)| format!("; did you mean {lang}?"))
            .unwrap_or_default();
        return Err(format!(
            "{language:?} is not a lowercase ISO 639-1 language code{hint} ({expected})"
        ));
    }
    Ok((name, language))
}

fn read_template(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file (sub-folders are not read)".into());
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!(
            "{} bytes; a template may have at most {MAX_FILE_BYTES}",
            meta.len()
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    String::from_utf8(bytes).map_err(|_| "not valid UTF-8 text".into())
}

fn normalize_language(language: &str) -> String {
    language
        .split(['-', '_'])
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// Cut trailing whitespace from each line, keep at most one blank line in a row (Amazon
/// rejects more than two consecutive line breaks), drop leading and trailing blank lines.
fn tidy(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut blank = 0usize;
    for line in raw.lines() {
        let line = line.trim_end();
        if line.is_empty() {
            blank += 1;
            continue;
        }
        if !out.is_empty() {
            out.push('\n');
            if blank > 0 {
                out.push('\n');
            }
        }
        blank = 0;
        out.push_str(line);
    }
    out
}

/// Collects rendered output and refuses to grow past [`MAX_OUTPUT_BYTES`].
#[derive(Default)]
struct CappedWriter {
    buf: Vec<u8>,
    exceeded: bool,
}

impl io::Write for CappedWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len() + data.len() > MAX_OUTPUT_BYTES {
            self.exceeded = true;
            return Err(io::Error::other("message too long"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Marketplaces

/// Amazon marketplace id → (buyer language, IANA time zone), from
/// research/marketplaces.md §1.3. The zone is the one Amazon states dates in for that
/// marketplace (its end-of-day delivery dates fall on the right day there).
const MARKETPLACES: &[(&str, &str, Tz)] = &[
    ("ATVPDKIKX0DER", "en", Tz::America__Los_Angeles), // US
    ("A2EUQ1WTGCTBG2", "en", Tz::America__Los_Angeles), // CA
    ("A1AM78C64UM0Y8", "es", Tz::America__Mexico_City), // MX
    ("A2Q3Y263D00KWC", "pt", Tz::America__Sao_Paulo),  // BR
    ("A28R8C7NBKEWEA", "en", Tz::Europe__Dublin),      // IE
    ("A1RKKUPIHCS9HS", "es", Tz::Europe__Madrid),      // ES
    ("A1F83G8C2ARO7P", "en", Tz::Europe__London),      // UK
    ("A13V1IB3VIYZZH", "fr", Tz::Europe__Paris),       // FR
    ("AMEN7PMS3EDWL", "fr", Tz::Europe__Brussels),     // BE
    ("A1805IZSGTT6HS", "nl", Tz::Europe__Amsterdam),   // NL
    ("A1PA6795UKMFR9", "de", Tz::Europe__Berlin),      // DE
    ("APJ6JRA9NG5V4", "it", Tz::Europe__Rome),         // IT
    ("A2NODRKZP88ZB9", "sv", Tz::Europe__Stockholm),   // SE
    ("AE08WJ6YKNBMC", "en", Tz::Africa__Johannesburg), // ZA
    ("A1C3SOZRARQ6R3", "pl", Tz::Europe__Warsaw),      // PL
    ("ARBP9OOSHTCHU", "en", Tz::Africa__Cairo),        // EG
    ("A33AVAJ2PDY3EV", "tr", Tz::Europe__Istanbul),    // TR
    ("A17E79C6D8DWNP", "en", Tz::Asia__Riyadh),        // SA
    ("A2VIGQ35RCS4UG", "en", Tz::Asia__Dubai),         // AE
    ("A21TJRUUN4KGV", "en", Tz::Asia__Kolkata),        // IN
    ("A19VAU5U5O7RUS", "en", Tz::Asia__Singapore),     // SG
    ("A39IBJ37TRP1C6", "en", Tz::Australia__Sydney),   // AU
    ("A1VC38T7YXB528", "ja", Tz::Asia__Tokyo),         // JP
];

/// The language to write to buyers of a marketplace (Amazon marketplace id → ISO 639-1);
/// "en" for an unknown id.
pub fn language_for_marketplace(marketplace_id: &str) -> &'static str {
    MARKETPLACES
        .iter()
        .find(|(id, _, _)| *id == marketplace_id.trim())
        .map_or(FALLBACK_LANGUAGE, |(_, lang, _)| lang)
}

/// The marketplace's time zone for dates shown to buyers; UTC for an unknown id.
pub fn timezone_for_marketplace(marketplace_id: &str) -> Tz {
    MARKETPLACES
        .iter()
        .find(|(id, _, _)| *id == marketplace_id.trim())
        .map_or(Tz::UTC, |(_, _, tz)| *tz)
}

// ---------------------------------------------------------------------------------------
// Filters

fn filter_error(message: String) -> minijinja::Error {
    minijinja::Error::new(ErrorKind::InvalidOperation, message)
}

fn context_str(state: &State, name: &str) -> Option<String> {
    state
        .lookup(name)
        .and_then(|v| v.as_str().map(str::to_owned))
}

/// `{{ value|date }}`: see the module documentation.
fn date_filter(state: &State, value: Value) -> Result<String, minijinja::Error> {
    let Some(text) = value.as_str() else {
        return Err(filter_error(format!(
            "date expects an ISO 8601 date string, not {} (guard a nullable date with {{% if … %}})",
            value.kind()
        )));
    };
    let tz = match context_str(state, "_tz") {
        Some(name) => Some(
            name.parse::<Tz>()
                .map_err(|_| filter_error(format!("_tz {name:?} is not an IANA time zone")))?,
        ),
        None => None,
    };
    let date = parse_date(text, tz)
        .ok_or_else(|| filter_error(format!("date cannot read {text:?} as an ISO 8601 date")))?;
    let language = context_str(state, "_lang").unwrap_or_else(|| FALLBACK_LANGUAGE.into());
    let american = tz.is_none_or(|tz| tz.name().starts_with("America/"));
    Ok(format_date(date, &language, american))
}

/// A timestamp is shown on its calendar day in `tz` (or in its own offset without a
/// zone); a bare date is a calendar day already.
fn parse_date(text: &str, tz: Option<Tz>) -> Option<NaiveDate> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(match tz {
            Some(tz) => t.with_timezone(&tz).date_naive(),
            None => t.date_naive(),
        });
    }
    if let Ok(t) = NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f") {
        // No offset: Amazon's timestamps are UTC.
        let t = t.and_utc();
        return Some(match tz {
            Some(tz) => t.with_timezone(&tz).date_naive(),
            None => t.date_naive(),
        });
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()
}

/// Month names from January, as dates use them (Polish takes the genitive).
const MONTHS: &[(&str, &str)] = &[
    (
        "en",
        "January February March April May June July August September October November December",
    ),
    (
        "de",
        "Januar Februar März April Mai Juni Juli August September Oktober November Dezember",
    ),
    (
        "fr",
        "janvier février mars avril mai juin juillet août septembre octobre novembre décembre",
    ),
    (
        "es",
        "enero febrero marzo abril mayo junio julio agosto septiembre octubre noviembre diciembre",
    ),
    (
        "it",
        "gennaio febbraio marzo aprile maggio giugno luglio agosto settembre ottobre novembre dicembre",
    ),
    (
        "nl",
        "januari februari maart april mei juni juli augustus september oktober november december",
    ),
    (
        "sv",
        "januari februari mars april maj juni juli augusti september oktober november december",
    ),
    (
        "pl",
        "stycznia lutego marca kwietnia maja czerwca lipca sierpnia września października listopada grudnia",
    ),
    (
        "tr",
        "Ocak Şubat Mart Nisan Mayıs Haziran Temmuz Ağustos Eylül Ekim Kasım Aralık",
    ),
    (
        "pt",
        "janeiro fevereiro março abril maio junho julho agosto setembro outubro novembro dezembro",
    ),
];

fn month_name(language: &str, month0: usize) -> Option<&'static str> {
    MONTHS
        .iter()
        .find(|(l, _)| *l == language)
        .and_then(|(_, names)| names.split(' ').nth(month0))
}

fn format_date(date: NaiveDate, language: &str, american: bool) -> String {
    let (d, y) = (date.day(), date.year());
    let Some(m) = month_name(language, date.month0() as usize) else {
        return match language {
            "ja" => format!("{y}年{}月{d}日", date.month()),
            _ => date.format("%Y-%m-%d").to_string(),
        };
    };
    match language {
        "en" if american => format!("{m} {d}, {y}"),
        "de" => format!("{d}. {m} {y}"),
        "fr" if d == 1 => format!("1er {m} {y}"),
        "es" | "pt" => format!("{d} de {m} de {y}"),
        _ => format!("{d} {m} {y}"),
    }
}

/// `{{ money|money }}` or `{{ amount|money("EUR") }}`: see the module documentation.
fn money_filter(
    state: &State,
    value: Value,
    currency: Option<String>,
) -> Result<String, minijinja::Error> {
    let (amount, currency) = if value.as_object().is_some() && !value.is_number() {
        let amount = value.get_attr("amount")?;
        let code = value.get_attr("currency")?;
        let Some(code) = code.as_str().map(str::to_owned).or(currency) else {
            return Err(filter_error(
                "money expects {amount, currency}; the currency is missing".into(),
            ));
        };
        (amount, code)
    } else {
        let Some(code) = currency else {
            return Err(filter_error(format!(
                "money expects {{amount, currency}} or a number with a currency argument, not {} (guard a nullable amount with {{% if … %}})",
                value.kind()
            )));
        };
        (value, code)
    };
    let currency = currency.trim().to_ascii_uppercase();
    let digits = minor_digits(&currency);
    let text = if let Some(s) = amount.as_str() {
        s.trim().to_owned()
    } else if amount.is_number() {
        if let Some(i) = amount.as_i64() {
            i.to_string()
        } else {
            let f = f64::try_from(amount.clone())?;
            if !f.is_finite() {
                return Err(filter_error(format!("money cannot show {f}")));
            }
            f.to_string()
        }
    } else {
        return Err(filter_error(format!(
            "money expects an amount (number or decimal string), not {}",
            amount.kind()
        )));
    };
    let (negative, units, fraction) = round_decimal(&text, digits)
        .ok_or_else(|| filter_error(format!("money cannot read {text:?} as an amount")))?;
    let language = context_str(state, "_lang").unwrap_or_else(|| FALLBACK_LANGUAGE.into());
    Ok(format_money(
        negative, &units, &fraction, &currency, &language,
    ))
}

/// Digits after the decimal point for a currency.
fn minor_digits(currency: &str) -> usize {
    match currency {
        "JPY" | "KRW" | "CLP" | "VND" | "ISK" | "HUF" => 0,
        _ => 2,
    }
}

/// "1234.565" with 2 digits → (false, "1234", "57"); half away from zero, in decimal so that
/// no binary rounding creeps into amounts shown to buyers.
fn round_decimal(text: &str, digits: usize) -> Option<(bool, String, String)> {
    let (negative, rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (int, frac) = rest.split_once('.').unwrap_or((rest, ""));
    let all_digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    if int.is_empty() || !all_digits(int) || !all_digits(frac) || int.len() > 30 {
        return None;
    }
    let mut frac: Vec<u8> = frac.bytes().map(|b| b - b'0').collect();
    let round_up = frac.get(digits).is_some_and(|d| *d >= 5);
    frac.resize(digits, 0);
    let mut number: Vec<u8> = int.bytes().map(|b| b - b'0').chain(frac).collect();
    if round_up {
        let mut i = number.len();
        loop {
            if i == 0 {
                number.insert(0, 1);
                break;
            }
            i -= 1;
            if number[i] == 9 {
                number[i] = 0;
            } else {
                number[i] += 1;
                break;
            }
        }
    }
    let split = number.len() - digits;
    let to_text = |d: &[u8]| d.iter().map(|d| char::from(b'0' + d)).collect::<String>();
    let mut units = to_text(&number[..split]).trim_start_matches('0').to_owned();
    if units.is_empty() {
        units.push('0');
    }
    let fraction = to_text(&number[split..]);
    let zero = units == "0" && fraction.chars().all(|c| c == '0');
    Some((negative && !zero, units, fraction))
}

/// How a language writes amounts.
struct MoneyStyle {
    decimal: &'static str,
    group: &'static str,
    /// Group only from five integer digits on ("1234,50 €" but "12.345,00 €").
    min_five: bool,
    /// Symbol before the number; `space` between symbol and number.
    before: bool,
    space: bool,
}

fn money_style(language: &str, currency: &str) -> MoneyStyle {
    let style = |decimal, group, min_five, before, space| MoneyStyle {
        decimal,
        group,
        min_five,
        before,
        space,
    };
    match language {
        // Mexico writes pesos the American way.
        "es" if currency == "MXN" => style(".", ",", false, true, false),
        "de" | "it" => style(",", ".", false, false, true),
        "es" => style(",", ".", true, false, true),
        "fr" => style(",", " ", false, false, true),
        "sv" => style(",", " ", false, false, true),
        "pl" => style(",", " ", true, false, true),
        "nl" => style(",", ".", false, true, true),
        "pt" => style(",", ".", false, true, true),
        "tr" => style(",", ".", false, true, false),
        _ => style(".", ",", false, true, false),
    }
}

fn currency_symbol(currency: &str, language: &str) -> Option<&'static str> {
    Some(match currency {
        // Buyers pay in their marketplace's currency and Amazon shows every dollar and peso
        // as "$" there.
        "USD" | "CAD" | "AUD" | "SGD" | "MXN" => "$",
        "EUR" => "€",
        "GBP" => "£",
        "JPY" if language == "ja" => "￥",
        "JPY" => "¥",
        "INR" => "₹",
        "TRY" => "₺",
        "PLN" => "zł",
        "SEK" => "kr",
        "BRL" => "R$",
        "ZAR" => "R",
        _ => return None,
    })
}

fn format_money(
    negative: bool,
    units: &str,
    fraction: &str,
    currency: &str,
    language: &str,
) -> String {
    let style = money_style(language, currency);
    let grouped = if style.min_five && units.len() < 5 {
        units.to_owned()
    } else {
        let mut out = String::new();
        for (i, c) in units.chars().enumerate() {
            if i > 0 && (units.len() - i).is_multiple_of(3) {
                out.push_str(style.group);
            }
            out.push(c);
        }
        out
    };
    let number = if fraction.is_empty() {
        grouped
    } else {
        format!("{grouped}{}{fraction}", style.decimal)
    };
    let sign = if negative { "-" } else { "" };
    match currency_symbol(currency, language) {
        Some(symbol) if style.before => {
            let space = if style.space { " " } else { "" };
            format!("{sign}{symbol}{space}{number}")
        }
        Some(symbol) => format!("{sign}{number} {symbol}"),
        // An ISO code reads as a word: always spaced.
        None if style.before => format!("{sign}{currency} {number}"),
        None => format!("{sign}{number} {currency}"),
    }
}

// ---------------------------------------------------------------------------------------
// Language codes

/// ISO 639-1, all 183 codes.
const ISO_639_1: &[&str] = &[
    "aa", "ab", "ae", "af", "ak", "am", "an", "ar", "as", "av", "ay", "az", "ba", "be", "bg", "bi",
    "bm", "bn", "bo", "br", "bs", "ca", "ce", "ch", "co", "cr", "cs", "cu", "cv", "cy", "da", "de",
    "dv", "dz", "ee", "el", "en", "eo", "es", "et", "eu", "fa", "ff", "fi", "fj", "fo", "fr", "fy",
    "ga", "gd", "gl", "gn", "gu", "gv", "ha", "he", "hi", "ho", "hr", "ht", "hu", "hy", "hz", "ia",
    "id", "ie", "ig", "ii", "ik", "io", "is", "it", "iu", "ja", "jv", "ka", "kg", "ki", "kj", "kk",
    "kl", "km", "kn", "ko", "kr", "ks", "ku", "kv", "kw", "ky", "la", "lb", "lg", "li", "ln", "lo",
    "lt", "lu", "lv", "mg", "mh", "mi", "mk", "ml", "mn", "mr", "ms", "mt", "my", "na", "nb", "nd",
    "ne", "ng", "nl", "nn", "no", "nr", "nv", "ny", "oc", "oj", "om", "or", "os", "pa", "pi", "pl",
    "ps", "pt", "qu", "rm", "rn", "ro", "ru", "rw", "sa", "sc", "sd", "se", "sg", "si", "sk", "sl",
    "sm", "sn", "so", "sq", "sr", "ss", "st", "su", "sv", "sw", "ta", "te", "tg", "th", "ti", "tk",
    "tl", "tn", "to", "tr", "ts", "tt", "tw", "ty", "ug", "uk", "ur", "uz", "ve", "vi", "vo", "wa",
    "wo", "xh", "yi", "yo", "za", "zh", "zu",
];

/// Country codes people write where the language code is meant.
const COUNTRY_NOT_LANGUAGE: &[(&str, &str)] = &[
    ("jp", "ja"),
    ("cz", "cs"),
    ("dk", "da"),
    ("gr", "el"),
    ("ua", "uk"),
    ("cn", "zh"),
    ("gb", "en"),
    ("us", "en"),
    ("at", "de"),
    ("mx", "es"),
    ("rs", "sr"),
];

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use serde_json::{Value as Json, json};

    use super::*;

    const SHIPPED: &[&str] = &[
        "acknowledge",
        "cancel_confirmed",
        "cancel_official_path",
        "ghost_order",
        "ghost_order_found_elsewhere",
        "out_for_delivery",
        "pending_order",
        "pending_over_7_days",
        "refund_confirmed",
        "shipping_exception",
        "where_is_my_parcel_fba",
        "where_is_my_parcel_fbm",
    ];
    const LANGUAGES: &[(&str, &str)] = &[
        ("en", "ATVPDKIKX0DER"),
        ("de", "A1PA6795UKMFR9"),
        ("fr", "A13V1IB3VIYZZH"),
        ("es", "A1RKKUPIHCS9HS"),
        ("it", "APJ6JRA9NG5V4"),
    ];
    const STATUSES: &[&str] = &[
        "Pending",
        "Unshipped",
        "PartiallyShipped",
        "Shipped",
        "Canceled",
        "Unfulfillable",
        "InvoiceUnconfirmed",
        "PendingAvailability",
    ];
    const SHIPMENT_STATUSES: &[&str] = &[
        "Unknown",
        "LabelCreated",
        "InTransit",
        "OutForDelivery",
        "AvailableForPickup",
        "DeliveryAttempted",
        "Delivered",
        "Exception",
        "ReturnToSender",
        "Cancelled",
    ];
    const ORDER_ID: &str = "114-3941689-8772232";
    const TRACKING_URL: &str = "https://www.ups.com/track?tracknum=1Z999AA10123456784";

    fn shipped_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/templates")
    }

    fn shipped() -> Templates {
        match Templates::load_dir(&shipped_dir()) {
            Ok(t) => t,
            Err(errors) => panic!("the shipped templates do not load: {errors:#?}"),
        }
    }

    fn build(sources: &[(&str, &str)]) -> Templates {
        match Templates::from_sources(sources) {
            Ok(t) => t,
            Err(errors) => panic!("{errors:#?}"),
        }
    }

    fn order(status: &str, fulfillment: &str, marketplace: &str) -> Json {
        let currency = if marketplace == "ATVPDKIKX0DER" {
            "USD"
        } else {
            "EUR"
        };
        json!({
            "id": ORDER_ID,
            "channel": "amazon",
            "marketplace": marketplace,
            "status": status,
            "fulfillment": fulfillment,
            "purchase_date": "2026-11-02T18:20:31Z",
            "last_update": "2026-11-10T07:00:00Z",
            "status_since": "2026-11-02T18:20:31Z",
            "latest_ship_date": "2026-11-05T07:59:59Z",
            "latest_delivery_date": "2026-11-14T07:59:59Z",
            "age_days": 9,
            "days_in_status": 9,
            "pending_days": if status == "Pending" { 9 } else { 0 },
            "buyer_requested_cancel": status == "Canceled",
            "is_prime": fulfillment == "AFN",
            "is_business": false,
            "order_type": "StandardOrder",
            "total": {"amount": "24.99", "currency": currency},
            "items": [{
                "id": "52986411826454",
                "asin": "B0C1XYZ123",
                "sku": "LAMP-OAK-01",
                "title": "Oak desk lamp with linen shade",
                "quantity": 1,
                "quantity_shipped": if status == "Shipped" { 1 } else { 0 },
                "price": {"amount": "24.99", "currency": currency},
                "buyer_requested_cancel": false,
                "cancel_reason": null
            }]
        })
    }

    /// An order with every nullable field null.
    fn sparse_order(status: &str, marketplace: &str) -> Json {
        let mut o = order(status, "MFN", marketplace);
        for key in [
            "fulfillment",
            "latest_ship_date",
            "latest_delivery_date",
            "order_type",
            "total",
        ] {
            o[key] = Json::Null;
        }
        o
    }

    fn shipment(status: &str) -> Json {
        json!({
            "carrier": "UPS",
            "tracking_number": "1Z999AA10123456784",
            "tracking_url": TRACKING_URL,
            "status": status,
            "status_text": "Departed from facility",
            "last_event_at": "2026-11-10T15:04:00Z",
            "last_event_location": "Louisville, KY",
            "estimated_delivery": "2026-11-12T20:00:00Z"
        })
    }

    fn sparse_shipment() -> Json {
        json!({
            "carrier": null,
            "tracking_number": null,
            "tracking_url": null,
            "status": "Unknown",
            "status_text": null,
            "last_event_at": null,
            "last_event_location": null,
            "estimated_delivery": null
        })
    }

    fn context(order: Json, shipment: Json) -> Json {
        let currency = order["total"]["currency"].clone();
        json!({
            "order": order,
            "shipment": shipment,
            "message": {"subject": "Where is my order?", "order_id_found": ORDER_ID, "tracking_number_found": null},
            "refund": {"amount": {"amount": "24.99", "currency": if currency.is_null() { json!("EUR") } else { currency }}}
        })
    }

    /// Every combination a template may meet with an order present.
    fn order_contexts(marketplace: &str) -> Vec<(String, Json)> {
        let mut shipments = vec![("none".to_owned(), Json::Null)];
        shipments.extend(
            SHIPMENT_STATUSES
                .iter()
                .map(|s| ((*s).to_owned(), shipment(s))),
        );
        shipments.push(("sparse".to_owned(), sparse_shipment()));
        let mut out = Vec::new();
        for status in STATUSES {
            for (label, s) in &shipments {
                for fulfillment in ["MFN", "AFN"] {
                    out.push((
                        format!("{status}/{fulfillment}/{label}"),
                        context(order(status, fulfillment, marketplace), s.clone()),
                    ));
                }
                out.push((
                    format!("{status}/sparse/{label}"),
                    context(sparse_order(status, marketplace), s.clone()),
                ));
            }
        }
        let mut no_extras = context(order("Shipped", "MFN", marketplace), shipment("InTransit"));
        no_extras["message"] = Json::Null;
        no_extras["refund"] = Json::Null;
        out.push(("no message, no refund".into(), no_extras));
        for channel in ["amazon", "ebay", "shopify", "walmart", "etsy"] {
            let mut o = order("Shipped", "MFN", marketplace);
            o["channel"] = json!(channel);
            out.push((
                format!("channel {channel}"),
                context(o, shipment("InTransit")),
            ));
        }
        out
    }

    fn no_order_contexts() -> Vec<(String, Json)> {
        let base = |message: Json| json!({"order": null, "shipment": null, "message": message, "refund": null});
        vec![
            ("no order, no message".into(), base(Json::Null)),
            (
                "no order, ids".into(),
                base(
                    json!({"subject": "Order?", "order_id_found": "111-1111111-1111111", "tracking_number_found": "1Z999AA10123456784"}),
                ),
            ),
            (
                "no order, nothing found".into(),
                base(
                    json!({"subject": "Order?", "order_id_found": null, "tracking_number_found": null}),
                ),
            ),
        ]
    }

    /// What Amazon's messaging policy and DOMAIN.md forbid in any buyer message.
    fn assert_compliant(label: &str, text: &str) {
        let lower = text.to_lowercase();
        assert!(
            text.chars().count() <= 2000,
            "{label}: too long for the Messaging API:\n{text}"
        );
        assert!(!text.contains('@'), "{label}: e-mail address:\n{text}");
        assert!(
            !text.contains('<') && !text.contains('>'),
            "{label}: HTML or markup:\n{text}"
        );
        assert!(
            !text.contains("{{") && !text.contains("{%"),
            "{label}: template syntax leaked:\n{text}"
        );
        assert!(
            !text.contains("\n\n\n"),
            "{label}: more than two consecutive line breaks:\n{text}"
        );
        assert!(
            !text.lines().any(|l| l != l.trim_end()),
            "{label}: trailing whitespace:\n{text}"
        );
        let without_tracking = lower.replace(&TRACKING_URL.to_lowercase(), "");
        assert!(
            !without_tracking.contains("http") && !without_tracking.contains("www."),
            "{label}: a link other than the tracking link:\n{text}"
        );
        assert!(
            !text.chars().any(|c| {
                let c = c as u32;
                (0x1F000..=0x1FAFF).contains(&c) || (0x2600..=0x27BF).contains(&c) || c == 0xFE0F
            }),
            "{label}: emoji:\n{text}"
        );
        for phrase in [
            "received your message",
            "get back to you",
            "as soon as possible",
            "review",
            "feedback",
            "5 star",
            "five star",
            "coupon",
            "discount",
            "nachricht erhalten",
            "melden uns",
            "bewertung",
            "rezension",
            "bien reçu",
            "évaluation",
            "commentaire",
            "hemos recibido",
            "valoración",
            "opinión",
            "abbiamo ricevuto",
            "recensione",
            "valutazione",
        ] {
            assert!(
                !lower.contains(phrase),
                "{label}: forbidden phrase {phrase:?}:\n{text}"
            );
        }
    }

    #[test]
    fn every_shipped_template_exists_in_five_languages() {
        let t = shipped();
        assert_eq!(t.names(), SHIPPED);
        for name in SHIPPED {
            assert!(t.has(name));
            assert_eq!(t.languages(name), ["de", "en", "es", "fr", "it"], "{name}");
        }
    }

    #[test]
    fn shipped_templates_render_in_every_language_and_case() {
        let t = shipped();
        for (language, marketplace) in LANGUAGES {
            let with_order = order_contexts(marketplace);
            for name in SHIPPED {
                let mut contexts: Vec<&(String, Json)> = with_order.iter().collect();
                let no_order = no_order_contexts();
                if matches!(*name, "ghost_order" | "acknowledge") {
                    contexts.extend(no_order.iter());
                }
                for (label, ctx) in contexts {
                    let label = format!("{name}.{language} [{label}]");
                    let rendered = match t.render(name, language, ctx) {
                        Ok(r) => r,
                        Err(e) => panic!("{label}: {e}"),
                    };
                    assert_eq!(rendered.language, *language, "{label}");
                    assert!(
                        rendered
                            .template_file
                            .ends_with(&format!("{name}.{language}.txt")),
                        "{label}: {}",
                        rendered.template_file
                    );
                    assert_compliant(&label, &rendered.text);
                    if !ctx["order"].is_null() && *name != "ghost_order" {
                        assert!(
                            rendered.text.contains(ORDER_ID),
                            "{label}: no order id:\n{}",
                            rendered.text
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn shipped_templates_carry_the_substance() {
        let t = shipped();
        let us = "ATVPDKIKX0DER";
        let render = |name: &str, language: &str, ctx: &Json| match t.render(name, language, ctx) {
            Ok(r) => r.text,
            Err(e) => panic!("{name}.{language}: {e}"),
        };
        let pending = context(order("Pending", "MFN", us), Json::Null);
        let text = render("pending_order", "en", &pending);
        assert!(
            text.contains("\"Your Orders\"") && text.contains("cannot give you a date"),
            "{text}"
        );
        let text = render("pending_over_7_days", "en", &pending);
        assert!(
            text.contains("pending for 9 days") && text.contains("Amazon customer service"),
            "{text}"
        );

        let parcel = context(order("Shipped", "MFN", us), shipment("InTransit"));
        let text = render("where_is_my_parcel_fbm", "en", &parcel);
        for part in [
            "UPS",
            "1Z999AA10123456784",
            TRACKING_URL,
            "November 12, 2026",
        ] {
            assert!(text.contains(part), "missing {part}:\n{text}");
        }
        let text = render(
            "shipping_exception",
            "de",
            &context(
                order("Shipped", "MFN", "A1PA6795UKMFR9"),
                shipment("Exception"),
            ),
        );
        assert!(
            text.contains(TRACKING_URL) && text.contains("10. November 2026"),
            "{text}"
        );

        let fba = context(order("Shipped", "AFN", us), shipment("InTransit"));
        let text = render("where_is_my_parcel_fba", "en", &fba);
        assert!(
            text.contains("Amazon customer service") && text.contains(TRACKING_URL),
            "{text}"
        );

        let text = render(
            "cancel_official_path",
            "en",
            &context(order("Unshipped", "MFN", us), Json::Null),
        );
        assert!(text.contains("\"Request cancellation\""), "{text}");
        let text = render(
            "cancel_official_path",
            "en",
            &context(order("Shipped", "MFN", us), Json::Null),
        );
        assert!(
            text.contains("refuse the parcel") && text.contains("no longer be canceled"),
            "{text}"
        );

        let mut refund = context(order("Shipped", "MFN", "A1PA6795UKMFR9"), Json::Null);
        refund["refund"] = json!({"amount": {"amount": "12.5", "currency": "EUR"}});
        assert!(render("refund_confirmed", "de", &refund).contains("12,50 €"));
        assert!(render("refund_confirmed", "en", &refund).contains("€12.50"));

        let lost = no_order_contexts();
        let text = render("acknowledge", "en", &lost[0].1);
        assert!(text.contains("123-1234567-1234567"), "{text}");
        let text = render(
            "acknowledge",
            "en",
            &context(order("Unshipped", "MFN", us), Json::Null),
        );
        assert!(
            text.contains("scheduled to ship by November 4, 2026"),
            "{text}"
        );
        let text = render("ghost_order", "en", &lost[1].1);
        assert!(
            text.contains("looks like a parcel tracking number"),
            "{text}"
        );
    }

    #[test]
    fn shipped_templates_use_only_the_documented_context() {
        let errors = shipped().unknown_placeholders(CONTEXT_PATHS, CONTEXT_OBJECTS);
        assert!(errors.is_empty(), "{errors:#?}");
    }

    #[test]
    fn falls_back_to_english_and_says_so() {
        let t = shipped();
        let ctx = context(order("Pending", "MFN", "A1805IZSGTT6HS"), Json::Null);
        let Ok(r) = t.render("pending_order", "nl", &ctx) else {
            panic!("no fallback");
        };
        assert_eq!(r.language, "en");
        assert!(r.template_file.ends_with("pending_order.en.txt"));
        assert!(r.text.starts_with("Hello,"));
        // A locale is taken by its language.
        let Ok(r) = t.render("pending_order", "de-DE", &ctx) else {
            panic!("locale");
        };
        assert_eq!(r.language, "de");
        assert!(matches!(
            t.render("no_such_template", "en", &ctx),
            Err(TemplateError::Unknown { .. })
        ));
    }

    #[test]
    fn missing_variable_names_file_and_line() {
        let t = build(&[(
            "x.en.txt",
            "Hello,\n\nyour order {{ order.id }}\nis {{ order.colour }}.\n",
        )]);
        let err = t.render("x", "en", &json!({"order": {"id": ORDER_ID}}));
        let Err(TemplateError::Render {
            file,
            line,
            message,
        }) = &err
        else {
            panic!("{err:?}");
        };
        assert_eq!(file, "x.en.txt");
        assert_eq!(*line, Some(4));
        assert!(message.contains("order.colour"), "{message}");
        let Err(e) = err else { panic!() };
        assert!(e.to_string().starts_with("x.en.txt:4: "), "{e}");
    }

    #[test]
    fn missing_variable_in_a_loaded_folder_names_the_path() {
        let Ok(dir) = tempfile::tempdir() else {
            panic!("tempdir")
        };
        let Ok(()) = std::fs::write(dir.path().join("x.de.txt"), "a\nb\n{{ shipment.carrier }}")
        else {
            panic!("write");
        };
        let Ok(()) = std::fs::write(dir.path().join("x.en.txt"), "en") else {
            panic!("write")
        };
        let Ok(t) = Templates::load_dir(dir.path()) else {
            panic!("load")
        };
        let Err(e) = t.render("x", "de", &json!({})) else {
            panic!("rendered")
        };
        let shown = dir.path().join("x.de.txt").display().to_string();
        assert!(e.to_string().starts_with(&format!("{shown}:3: ")), "{e}");
    }

    #[test]
    fn templates_that_read_the_buyer_are_told_apart() {
        let t = build(&[
            (
                "hello.en.txt",
                "{% if buyer %}Hello {{ buyer.first_name }},{% endif %} order {{ order.id }}\n",
            ),
            ("hello.de.txt", "Bestellung {{ order.id }}\n"),
            ("plain.en.txt", "Order {{ order.id }}\n"),
        ]);
        assert!(t.reads("hello", "buyer"));
        assert!(!t.reads("plain", "buyer"));
        assert!(!t.reads("missing", "buyer"));
        assert!(
            t.unknown_placeholders(CONTEXT_PATHS, CONTEXT_OBJECTS)
                .is_empty()
        );
    }

    #[test]
    fn unknown_placeholders_are_reported_with_file_and_line() {
        let t = build(&[(
            "x.en.txt",
            "{{ order.id }} {{ order.total.amount }}\n{% for item in order.items %}{{ item.title }}{% endfor %}\n{% if shipment %}{{ shipment.tracking_link }}{% endif %}\n{{ range(3)|join }} {{ _lang }}",
        )]);
        let errors = t.unknown_placeholders(CONTEXT_PATHS, CONTEXT_OBJECTS);
        assert_eq!(
            errors,
            [TemplateError::UnknownPlaceholder {
                file: "x.en.txt".into(),
                line: Some(3),
                path: "shipment.tracking_link".into(),
            }]
        );
        assert_eq!(
            errors[0].to_string(),
            "x.en.txt:3: unknown placeholder shipment.tracking_link"
        );
        // A whole object covers what is below it; a bare prefix of a known path is fine.
        assert!(
            t.unknown_placeholders(
                &["order.id", "shipment.carrier"],
                &["order.total", "order.items", "shipment.tracking_link"]
            )
            .is_empty()
        );
        assert_eq!(
            t.unknown_placeholders(
                &["order.id", "shipment.carrier"],
                &["order.items", "shipment.tracking_link"]
            )
            .len(),
            1
        );
    }

    #[test]
    fn malformed_file_names_are_rejected_and_named() {
        let cases = [
            ("pending_order.en.text", "not a template file name"),
            ("pending_order.txt", "language is missing"),
            ("Pending_Order.en.txt", "may use only a-z"),
            ("pending-order.en.txt", "may use only a-z"),
            ("pending_order.jp.txt", "did you mean ja?"),
            ("pending_order.EN.txt", "not a lowercase ISO 639-1"),
            ("pending_order.eng.txt", "not a lowercase ISO 639-1"),
            ("pending.order.en.txt", "may use only a-z"),
        ];
        for (file, reason) in cases {
            let result = Templates::from_sources(&[("ok.en.txt", "fine"), (file, "text")]);
            let Err(errors) = result else {
                panic!("{file} accepted")
            };
            assert_eq!(errors.len(), 1, "{file}: {errors:?}");
            let TemplateError::FileName {
                file: named,
                reason: got,
            } = &errors[0]
            else {
                panic!("{file}: {errors:?}");
            };
            assert_eq!(named, file);
            assert!(got.contains(reason), "{file}: {got}");
        }
        // README files and dotfiles live beside templates.
        let t = build(&[
            ("ok.en.txt", "fine"),
            ("README.md", "# notes"),
            (".gitkeep", ""),
            ("readme", "x"),
        ]);
        assert_eq!(t.names(), ["ok"]);
    }

    #[test]
    fn a_folder_reports_every_error_at_once() {
        let Ok(dir) = tempfile::tempdir() else {
            panic!("tempdir")
        };
        let files = [
            ("good.en.txt", "Order {{ order.id }}"),
            ("good.de.txt", "Bestellung {{ order.id }}"),
            ("broken.en.txt", "line one\nline two {% if order %}\n"),
            ("pending_order.en.text", "typo"),
            ("only_german.de.txt", "Hallo"),
            ("README.md", "notes"),
            (".hidden.swp", "junk"),
        ];
        for (name, text) in files {
            let Ok(()) = std::fs::write(dir.path().join(name), text) else {
                panic!("write")
            };
        }
        let Ok(()) = std::fs::create_dir(dir.path().join("old")) else {
            panic!("mkdir")
        };
        let Ok(()) = std::fs::create_dir(dir.path().join("sub.en.txt")) else {
            panic!("mkdir")
        };
        let Err(errors) = Templates::load_dir(dir.path()) else {
            panic!("loaded")
        };
        let shown = |name: &str| dir.path().join(name).display().to_string();
        assert!(
            errors.iter().any(|e| matches!(e, TemplateError::Syntax { file, line: Some(_), message } if *file == shown("broken.en.txt") && message.starts_with("syntax error"))),
            "{errors:#?}"
        );
        assert!(errors.iter().any(|e| matches!(e, TemplateError::FileName { file, .. } if *file == shown("pending_order.en.text"))), "{errors:#?}");
        assert!(
            errors.iter().any(
                |e| matches!(e, TemplateError::FileName { file, .. } if *file == shown("old"))
            ),
            "{errors:#?}"
        );
        assert!(errors.iter().any(|e| matches!(e, TemplateError::MissingFallback { name, .. } if name == "only_german")), "{errors:#?}");
        assert!(errors.iter().any(|e| matches!(e, TemplateError::Read { path, reason } if *path == shown("sub.en.txt") && reason.contains("not a regular file"))), "{errors:#?}");
        assert_eq!(errors.len(), 5, "{errors:#?}");
    }

    #[test]
    fn a_missing_folder_is_an_empty_set() {
        let Ok(dir) = tempfile::tempdir() else {
            panic!("tempdir")
        };
        let Ok(t) = Templates::load_dir(&dir.path().join("nope")) else {
            panic!("error")
        };
        assert!(t.names().is_empty());
        let Ok(t) = Templates::load_dir(dir.path()) else {
            panic!("error")
        };
        assert!(t.names().is_empty());
        let Ok(()) = std::fs::write(dir.path().join("file"), "x") else {
            panic!("write")
        };
        let Err(errors) = Templates::load_dir(&dir.path().join("file")) else {
            panic!("a file is not a folder");
        };
        assert!(matches!(errors.as_slice(), [TemplateError::Read { .. }]));
    }

    #[test]
    fn a_syntax_error_has_file_and_line() {
        let Err(errors) = Templates::from_sources(&[("x.en.txt", "Hello\n\n{{ order.id }\n")])
        else {
            panic!("compiled");
        };
        let [
            TemplateError::Syntax {
                file,
                line,
                message,
            },
        ] = errors.as_slice()
        else {
            panic!("{errors:?}");
        };
        assert_eq!(file, "x.en.txt");
        assert_eq!(*line, Some(3));
        assert!(message.starts_with("syntax error"), "{message}");
        assert!(
            errors[0]
                .to_string()
                .starts_with("x.en.txt:3: syntax error"),
            "{}",
            errors[0]
        );
        let Err(errors) = Templates::from_sources(&[("x.en.txt", " \n")]) else {
            panic!("empty accepted")
        };
        assert!(matches!(
            errors.as_slice(),
            [TemplateError::Syntax { line: None, .. }]
        ));
    }

    #[test]
    fn a_runaway_template_is_stopped() {
        let t = build(&[
            (
                "huge.en.txt",
                "x\n{% for i in range(100000000) %}{{ i }}{% endfor %}",
            ),
            (
                "spin.en.txt",
                "x\n{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
            ),
            ("wide.en.txt", "{{ 'x' * 100000 }}"),
        ]);
        let started = std::time::Instant::now();
        assert!(t.render("huge", "en", &json!({})).is_err());
        let spin = t.render("spin", "en", &json!({}));
        assert!(
            matches!(&spin, Err(TemplateError::Limit { file, line: Some(2), message }) if file == "spin.en.txt" && message.contains("fuel")),
            "{spin:?}"
        );
        let wide = t.render("wide", "en", &json!({}));
        assert!(
            matches!(&wide, Err(TemplateError::Limit { .. })),
            "{wide:?}"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
    }

    #[test]
    fn every_template_needs_an_english_variant() {
        let Err(errors) =
            Templates::from_sources(&[("x.de.txt", "Hallo"), ("x.fr.txt", "Bonjour")])
        else {
            panic!("loaded");
        };
        assert_eq!(
            errors,
            [TemplateError::MissingFallback {
                name: "x".into(),
                file: "x.de.txt".into()
            }]
        );
    }

    #[test]
    fn output_is_plain_tidy_text() {
        let t = build(&[(
            "x.en.txt",
            "\n\nHello {{ name }},   \n\n\n\n{% if true %}\n  {{ '<b>Tom & Jerry</b>' }}\t\n{% endif %}\n\n\nBye\n\n",
        )]);
        let Ok(r) = t.render("x", "en", &json!({"name": "Ann"})) else {
            panic!("render")
        };
        assert_eq!(r.text, "Hello Ann,\n\n  <b>Tom & Jerry</b>\n\nBye");
        assert!(matches!(
            t.render("x", "en", &json!([1])),
            Err(TemplateError::Render { .. })
        ));
        let empty = build(&[("e.en.txt", "{% if false %}x{% endif %}")]);
        assert!(matches!(
            empty.render("e", "en", &json!({})),
            Err(TemplateError::Render { .. })
        ));
    }

    #[test]
    fn names_languages_and_version() {
        let a = build(&[
            ("b.en.txt", "1"),
            ("a.fr.txt", "2"),
            ("a.en.txt", "3"),
            ("a.de.txt", "4"),
        ]);
        assert_eq!(a.names(), ["a", "b"]);
        assert_eq!(a.languages("a"), ["de", "en", "fr"]);
        assert!(a.languages("c").is_empty());
        assert!(a.has("b") && !a.has("c"));
        let same = build(&[
            ("a.de.txt", "4"),
            ("a.en.txt", "3"),
            ("a.fr.txt", "2"),
            ("b.en.txt", "1"),
        ]);
        let changed = build(&[
            ("b.en.txt", "1"),
            ("a.fr.txt", "2"),
            ("a.en.txt", "3!"),
            ("a.de.txt", "4"),
        ]);
        assert_eq!(a.version(), same.version());
        assert_ne!(a.version(), changed.version());
        assert_eq!(a.version().len(), 12);
        assert_eq!(shipped().version(), shipped().version());
    }

    #[test]
    fn templates_can_be_shared_across_threads() {
        fn shareable<T: Send + Sync + std::fmt::Debug>(_: &T) {}
        let t = std::sync::Arc::new(shipped());
        shareable(&t);
        let clone = std::sync::Arc::clone(&t);
        let handle = std::thread::spawn(move || clone.names().len());
        let Ok(n) = handle.join() else {
            panic!("thread")
        };
        assert_eq!(n, SHIPPED.len());
        assert!(format!("{t:?}").contains("pending_order"));
    }

    #[test]
    fn marketplace_languages() {
        let cases = [
            ("ATVPDKIKX0DER", "en"),
            ("A2EUQ1WTGCTBG2", "en"),
            ("A1F83G8C2ARO7P", "en"),
            ("A39IBJ37TRP1C6", "en"),
            ("A19VAU5U5O7RUS", "en"),
            ("A28R8C7NBKEWEA", "en"),
            ("A21TJRUUN4KGV", "en"),
            ("AE08WJ6YKNBMC", "en"),
            ("A2VIGQ35RCS4UG", "en"),
            ("A17E79C6D8DWNP", "en"),
            ("ARBP9OOSHTCHU", "en"),
            ("A1PA6795UKMFR9", "de"),
            ("A13V1IB3VIYZZH", "fr"),
            ("AMEN7PMS3EDWL", "fr"),
            ("A1RKKUPIHCS9HS", "es"),
            ("A1AM78C64UM0Y8", "es"),
            ("APJ6JRA9NG5V4", "it"),
            ("A1805IZSGTT6HS", "nl"),
            ("A2NODRKZP88ZB9", "sv"),
            ("A1C3SOZRARQ6R3", "pl"),
            ("A33AVAJ2PDY3EV", "tr"),
            ("A1VC38T7YXB528", "ja"),
            ("A2Q3Y263D00KWC", "pt"),
            ("UNKNOWN", "en"),
            ("", "en"),
        ];
        for (id, language) in cases {
            assert_eq!(language_for_marketplace(id), language, "{id}");
        }
        assert_eq!(MARKETPLACES.len(), 23);
    }

    #[test]
    fn marketplace_time_zones() {
        let cases = [
            ("ATVPDKIKX0DER", Tz::America__Los_Angeles),
            ("A1PA6795UKMFR9", Tz::Europe__Berlin),
            ("A1F83G8C2ARO7P", Tz::Europe__London),
            ("A1VC38T7YXB528", Tz::Asia__Tokyo),
            ("A13V1IB3VIYZZH", Tz::Europe__Paris),
            ("A1AM78C64UM0Y8", Tz::America__Mexico_City),
            ("A39IBJ37TRP1C6", Tz::Australia__Sydney),
            ("A21TJRUUN4KGV", Tz::Asia__Kolkata),
            ("nope", Tz::UTC),
        ];
        for (id, tz) in cases {
            assert_eq!(timezone_for_marketplace(id), tz, "{id}");
        }
    }

    const FILTER_LANGUAGES: &[&str] = &[
        "en", "de", "fr", "es", "it", "nl", "sv", "pl", "tr", "ja", "pt", "da",
    ];

    fn filter_templates(text: &str) -> Templates {
        let files: Vec<String> = FILTER_LANGUAGES
            .iter()
            .map(|l| format!("f.{l}.txt"))
            .collect();
        let sources: Vec<(&str, &str)> = files.iter().map(|f| (f.as_str(), text)).collect();
        build(&sources)
    }

    fn apply(t: &Templates, language: &str, ctx: Json) -> String {
        match t.render("f", language, &ctx) {
            Ok(r) => r.text,
            Err(e) => panic!("{language}: {e}"),
        }
    }

    #[test]
    fn date_filter_per_language() {
        let t = filter_templates("{{ d|date }}");
        let cases = [
            ("en", "November 13, 2026"),
            ("de", "13. November 2026"),
            ("fr", "13 novembre 2026"),
            ("es", "13 de noviembre de 2026"),
            ("it", "13 novembre 2026"),
            ("nl", "13 november 2026"),
            ("sv", "13 november 2026"),
            ("pl", "13 listopada 2026"),
            ("tr", "13 Kasım 2026"),
            ("ja", "2026年11月13日"),
            ("pt", "13 de novembro de 2026"),
            ("da", "2026-11-13"),
        ];
        for (language, expected) in cases {
            assert_eq!(
                apply(&t, language, json!({"d": "2026-11-13"})),
                expected,
                "{language}"
            );
        }
        assert_eq!(
            apply(&t, "fr", json!({"d": "2026-11-01"})),
            "1er novembre 2026"
        );
        // Amazon's end-of-day timestamps fall on the right day in the marketplace's zone.
        let us = json!({"d": "2026-11-14T07:59:59Z", "order": {"marketplace": "ATVPDKIKX0DER"}});
        assert_eq!(apply(&t, "en", us), "November 13, 2026");
        let de = json!({"d": "2026-11-13T22:59:59Z", "order": {"marketplace": "A1PA6795UKMFR9"}});
        assert_eq!(apply(&t, "de", de), "13. November 2026");
        let uk = json!({"d": "2026-11-13T12:00:00Z", "order": {"marketplace": "A1F83G8C2ARO7P"}});
        assert_eq!(apply(&t, "en", uk), "13 November 2026");
        let jp = json!({"d": "2026-11-13T16:00:00Z", "order": {"marketplace": "A1VC38T7YXB528"}});
        assert_eq!(apply(&t, "ja", jp), "2026年11月14日");
        // Without a zone a timestamp keeps its own offset; the caller's `_tz` wins.
        assert_eq!(
            apply(&t, "en", json!({"d": "2026-11-13T23:30:00-05:00"})),
            "November 13, 2026"
        );
        assert_eq!(
            apply(
                &t,
                "en",
                json!({"d": "2026-11-13T23:30:00", "_tz": "Asia/Tokyo"})
            ),
            "14 November 2026"
        );
        assert_eq!(
            apply(
                &t,
                "en",
                json!({"d": "2026-11-13T23:30:00Z", "_tz": "Asia/Tokyo", "order": {"marketplace": "ATVPDKIKX0DER"}})
            ),
            "14 November 2026"
        );
        for bad in [
            json!({"d": null}),
            json!({"d": "13/11/2026"}),
            json!({"d": 5}),
            json!({"d": "2026-11-13", "_tz": "Mars/Olympus"}),
        ] {
            assert!(
                matches!(t.render("f", "en", &bad), Err(TemplateError::Render { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn money_filter_per_language() {
        let t = filter_templates("{{ m|money }}");
        let m =
            |amount: Json, currency: &str| json!({"m": {"amount": amount, "currency": currency}});
        let cases = [
            ("en", m(json!("24.99"), "USD"), "$24.99"),
            ("en", m(json!("24.99"), "GBP"), "£24.99"),
            ("en", m(json!("24.99"), "EUR"), "€24.99"),
            ("en", m(json!("1234.5"), "USD"), "$1,234.50"),
            ("en", m(json!("24.99"), "AED"), "AED 24.99"),
            ("en", m(json!("-5"), "USD"), "-$5.00"),
            ("de", m(json!("24.99"), "EUR"), "24,99 €"),
            ("de", m(json!("1234567.891"), "EUR"), "1.234.567,89 €"),
            ("fr", m(json!("24.99"), "EUR"), "24,99 €"),
            ("fr", m(json!("1234.5"), "EUR"), "1 234,50 €"),
            ("es", m(json!("24.99"), "EUR"), "24,99 €"),
            ("es", m(json!("1234.5"), "EUR"), "1234,50 €"),
            ("es", m(json!("12345.5"), "EUR"), "12.345,50 €"),
            ("es", m(json!("249"), "MXN"), "$249.00"),
            ("it", m(json!("24.99"), "EUR"), "24,99 €"),
            ("nl", m(json!("24.99"), "EUR"), "€ 24,99"),
            ("sv", m(json!("249"), "SEK"), "249,00 kr"),
            ("pl", m(json!("99.9"), "PLN"), "99,90 zł"),
            ("tr", m(json!("99.9"), "TRY"), "₺99,90"),
            ("ja", m(json!("2499"), "JPY"), "￥2,499"),
            ("pt", m(json!("24.99"), "BRL"), "R$ 24,99"),
            ("de", m(json!("24.99"), "CHF"), "24,99 CHF"),
            // Numbers and rounding in decimal, not binary.
            ("en", m(json!(24.99), "USD"), "$24.99"),
            ("en", m(json!(2.675), "USD"), "$2.68"),
            ("en", m(json!(25), "USD"), "$25.00"),
            ("en", m(json!("9.995"), "USD"), "$10.00"),
            ("en", m(json!("0.004"), "USD"), "$0.00"),
            ("en", m(json!("-0.001"), "USD"), "$0.00"),
            ("ja", m(json!("2499.5"), "JPY"), "￥2,500"),
        ];
        for (language, ctx, expected) in cases {
            assert_eq!(
                apply(&t, language, ctx.clone()),
                expected,
                "{language} {ctx}"
            );
        }
        let bare = filter_templates("{{ 24.99|money('EUR') }}");
        assert_eq!(apply(&bare, "de", json!({})), "24,99 €");
        for bad in [
            json!({"m": null}),
            json!({"m": {"amount": "abc", "currency": "EUR"}}),
            json!({"m": {"amount": null, "currency": "EUR"}}),
            json!({"m": {"amount": "1"}}),
            json!({"m": 5}),
        ] {
            assert!(
                matches!(t.render("f", "en", &bad), Err(TemplateError::Render { .. })),
                "{bad}"
            );
        }
    }
}
