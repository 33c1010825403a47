//! `nightdesk mail parse FILE.eml [--json] [--own ADDRESS]…`: what nightdesk understands
//! of one buyer mail (marketplace, relay address, order id or tracking number, language,
//! intent, and whether it must not be answered), so ops can see why a rule answered as
//! it did. It reads one file and writes nothing.

use std::path::Path;
use std::process::ExitCode;

use crate::sources::mail::{self, Understanding};

use super::CliError;

pub(super) fn parse(file: &Path, json: bool, own: &[String]) -> Result<ExitCode, CliError> {
    let raw = std::fs::read(file)
        .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", file.display())))?;
    let parsed =
        mail::parse(&raw).map_err(|e| CliError::Usage(format!("{}: {e}", file.display())))?;
    let understood = mail::understand(&parsed, own);
    if json {
        let text = serde_json::to_string_pretty(&understood)
            .map_err(|e| CliError::Usage(e.to_string()))?;
        println!("{text}");
    } else {
        print!("{}", render(&parsed.subject, &understood));
    }
    Ok(ExitCode::SUCCESS)
}

fn render(subject: &str, u: &Understanding) -> String {
    let or_none = |v: &Option<String>| v.clone().unwrap_or_else(|| "(none)".to_owned());
    let mut out = format!("subject:         {subject}\n");
    out.push_str(&format!("marketplace:     {}\n", or_none(&u.marketplace)));
    out.push_str(&format!(
        "marketplace id:  {}\n",
        or_none(&u.marketplace_id)
    ));
    out.push_str(&format!("relay address:   {}\n", or_none(&u.relay_address)));
    out.push_str(&format!("order id:        {}\n", or_none(&u.order_id)));
    let tracking = match (&u.tracking_number, &u.tracking_carrier) {
        (Some(number), Some(carrier)) => format!("{number} ({carrier})"),
        (Some(number), None) => number.clone(),
        _ => "(none)".to_owned(),
    };
    out.push_str(&format!("tracking number: {tracking}\n"));
    out.push_str(&format!("language:        {}\n", or_none(&u.language)));
    out.push_str(&format!("intent:          {}\n", u.intent));
    out.push_str(&format!(
        "answer it:       {}\n",
        match &u.do_not_answer {
            Some(why) => format!("NO: {why}"),
            None => "yes".to_owned(),
        }
    ));
    for a in &u.attachments {
        out.push_str(&format!(
            "attachment:      {} ({}, {} bytes; not given to rules)\n",
            a.name.as_deref().unwrap_or("(no name)"),
            a.content_type,
            a.size
        ));
    }
    out.push_str("buyer's words:\n");
    for line in u.new_text.lines() {
        out.push_str(&format!("  | {line}\n"));
    }
    out
}
