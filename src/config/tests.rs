use super::*;

fn parse(text: &str) -> Result<Config, ConfigErrors> {
    Config::from_str(text, Path::new("config/test.yaml"))
}

const MINIMAL: &str = "store:\n  url: sqlite://x.db\nrules:\n  dir: rules\n";

#[test]
fn shipped_configs_are_valid() {
    for file in ["config/nightdesk.example.yaml", "config/demo.yaml"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        let loaded = Config::load(&path);
        assert!(
            loaded.is_ok(),
            "{file}: {}",
            loaded.err().map(|e| e.to_string()).unwrap_or_default()
        );
    }
}

#[test]
fn minimal_config_gets_defaults() {
    let config = parse(MINIMAL).map_err(|e| e.to_string());
    let Ok(config) = config else {
        panic!("{config:?}")
    };
    assert_eq!(config.mode, Mode::Live);
    assert_eq!(
        config.store,
        StoreTarget::Sqlite(PathBuf::from("config/x.db"))
    );
    assert_eq!(config.rules.dir, PathBuf::from("config/rules"));
    assert_eq!(config.rules.limits, RuleLimits::default());
    assert!(config.amazon.is_empty());
}

#[test]
fn unknown_key_names_file_line_and_key() {
    let text = "store:\n  url: sqlite://x.db\n  colour: blue\nrules:\n  dir: rules\n";
    let errors = parse(text).err().map(|e| e.0).unwrap_or_default();
    assert_eq!(errors.len(), 1);
    let e = &errors[0];
    assert_eq!(e.file, PathBuf::from("config/test.yaml"));
    assert_eq!(e.line, Some(3));
    assert_eq!(e.key, "store");
    assert!(
        e.message.contains("unknown field `colour`"),
        "{}",
        e.message
    );
    assert!(
        e.to_string()
            .starts_with("config/test.yaml:3: store: unknown field `colour`"),
        "{e}"
    );
}

#[test]
fn all_validation_errors_are_reported_at_once_with_lines() {
    let text = "\
store:
  url: mysql://x
rules:
  dir: rules
sweep:
  schedule: \"0 9 * * */2\"
amazon:
  accounts:
    - name: us
      region: moon
      marketplaces: [A1PA6795UKMFR9]
      client_id: abc
      client_secret: env:X
      refresh_token: env:Y
      schedule: \"* * * *\"
";
    let errors = parse(text).err().map(|e| e.0).unwrap_or_default();
    let found: Vec<(Option<usize>, &str)> =
        errors.iter().map(|e| (e.line, e.key.as_str())).collect();
    assert!(found.contains(&(Some(2), "store.url")), "{found:?}");
    assert!(found.contains(&(Some(6), "sweep.schedule")), "{found:?}");
    assert!(
        found.contains(&(Some(10), "amazon.accounts[0].region")),
        "{found:?}"
    );
    assert!(
        found.contains(&(Some(15), "amazon.accounts[0].schedule")),
        "{found:?}"
    );
    assert_eq!(errors.len(), 4, "{errors:?}");
}

#[test]
fn marketplace_must_belong_to_the_region() {
    let text = format!(
        "{MINIMAL}amazon:\n  accounts:\n    - name: us\n      region: na\n      marketplaces: [A1PA6795UKMFR9]\n      client_id: a\n      client_secret: env:A\n      refresh_token: env:B\n      schedule: \"* * * * *\"\n"
    );
    let errors = parse(&text)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(errors.contains("config/test.yaml:9: amazon.accounts[0].marketplaces[0]: A1PA6795UKMFR9 (DE) is served by the eu region"), "{errors}");
}

#[test]
fn fba_tracking_is_on_unless_turned_off() {
    let account = |extra: &str| {
        format!(
            "{MINIMAL}amazon:\n  accounts:\n    - name: us\n      region: na\n      marketplaces: [ATVPDKIKX0DER]\n      client_id: a\n      client_secret: env:A\n      refresh_token: env:B\n      schedule: \"* * * * *\"\n{extra}"
        )
    };
    let tracked = |text: String| match parse(&text) {
        Ok(config) => config
            .amazon
            .iter()
            .map(|a| a.fba_tracking)
            .collect::<Vec<_>>(),
        Err(e) => panic!("{e}"),
    };
    assert_eq!(tracked(account("")), vec![true]);
    assert_eq!(tracked(account("      fba_tracking: false\n")), vec![false]);
    let errors = parse(&account("      fba_tracking: sometimes\n"))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        errors.contains("config/test.yaml:14: amazon.accounts[0].fba_tracking: invalid type"),
        "{errors}"
    );
}

#[test]
fn a_literal_secret_is_refused_and_not_echoed() {
    let text = format!(
        "{MINIMAL}channels:\n  ops:\n    type: slack\n    webhook_url: https://hooks.slack.com/services/T1/B2/s3cr3t\n"
    );
    let errors = parse(&text)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(errors.contains("env:NAME"), "{errors}");
    assert!(
        errors
            .contains("config/test.yaml:8: channels.ops.webhook_url: a secret must be a reference"),
        "{errors}"
    );
    assert!(!errors.contains("s3cr3t"), "{errors}");
}

#[test]
fn postgres_password_is_hidden_in_debug_and_display() {
    let text =
        "store:\n  url: postgres://nightdesk:hunter2@db.internal/nightdesk\nrules:\n  dir: rules\n";
    let config = parse(text).map_err(|e| e.to_string());
    let Ok(config) = config else {
        panic!("{config:?}")
    };
    let shown = format!("{config:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("REDACTED"), "{shown}");
}

#[test]
fn marketplace_and_mail_sections_report_every_error_with_its_line() {
    let text = format!(
        "{MINIMAL}\
shopify:
  accounts:
    - name: shop
      shop: ridgeline.coffee
      access_token: env:SHOPIFY_TOKEN
      client_id: nope
ebay:
  accounts:
    - name: ebay-us
      client_id: app
      client_secret: env:EBAY_SECRET
walmart:
  accounts:
    - name: walmart-us
      client_id: app
      client_secret: env:WALMART_SECRET
      page_size: 500
mail:
  mailboxes:
    - account: nowhere
      address: not-an-address
      imap: {{ host: imap.example.com, security: plain, user: u, password: env:P }}
"
    );
    let errors = parse(&text).err().map(|e| e.0).unwrap_or_default();
    let found: Vec<(Option<usize>, &str)> =
        errors.iter().map(|e| (e.line, e.key.as_str())).collect();
    for expected in [
        (Some(8), "shopify.accounts[0].shop"),
        (Some(10), "shopify.accounts[0].client_id"),
        (Some(13), "ebay.accounts[0]"),
        (Some(21), "walmart.accounts[0].page_size"),
        (Some(24), "mail.mailboxes[0].account"),
        (Some(25), "mail.mailboxes[0].address"),
        (Some(26), "mail.mailboxes[0].imap.security"),
    ] {
        assert!(
            found.contains(&expected)
                || found
                    .iter()
                    .any(|(line, key)| *line == expected.0 && key.starts_with(expected.1)),
            "{expected:?} not in {found:?}"
        );
    }
}

#[test]
fn marketplace_accounts_are_built_with_their_defaults() {
    let text = format!(
        "{MINIMAL}\
shopify:
  accounts:
    - name: shop
      shop: ridgeline-coffee
      access_token: env:SHOPIFY_TOKEN
walmart:
  accounts:
    - name: walmart-us
      client_id: app
      client_secret: env:WALMART_SECRET
"
    );
    let config = match parse(&text) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(config.marketplaces.len(), 2);
    let shop = &config.marketplaces[0];
    assert_eq!(
        shop.base_url.as_str(),
        "https://ridgeline-coffee.myshopify.com/"
    );
    assert!(matches!(
        &shop.credentials,
        MarketplaceCredentials::Shopify { api_version, .. } if api_version == SHOPIFY_API_VERSION
    ));
    assert_eq!(
        config.marketplaces[1].base_url.as_str(),
        "https://marketplace.walmartapis.com/"
    );
    assert_eq!(config.marketplaces[1].page_size, 100);
}
