//! OpenAPI 3 contracts (`specs/carriers/*`, `specs/ebay`, `specs/walmart`; JSON or YAML): validate a
//! response body against a schema of `components/schemas`, with `jsonschema`.
//! Use from a test file with `#[path = "common/openapi.rs"] mod openapi;`.
#![allow(dead_code)]

use serde_json::{Value, json};

/// One OpenAPI 3 document.
pub struct OpenApi {
    pub file: String,
    pub doc: Value,
}

impl OpenApi {
    /// `specs/carriers/<relative>` under the crate root. Panics (failing the test, never
    /// passing it) when the contract is missing or unreadable.
    pub fn load(relative: &str) -> OpenApi {
        Self::load_spec(&format!("carriers/{relative}"))
    }

    /// `specs/<relative>` under the crate root (`ebay/sell_fulfillment_v1_oas3.yaml`).
    pub fn load_spec(relative: &str) -> OpenApi {
        let path = format!("{}/specs/{relative}", env!("CARGO_MANIFEST_DIR"));
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) => panic!("cannot read the contract {path}: {e}"),
        };
        let doc: Value = if path.ends_with(".json") {
            match serde_json::from_str(&text) {
                Ok(doc) => doc,
                Err(e) => panic!("{path} is not JSON: {e}"),
            }
        } else {
            match serde_yaml::from_str(&text) {
                Ok(doc) => doc,
                Err(e) => panic!("{path} is not YAML: {e}"),
            }
        };
        OpenApi {
            file: relative.to_owned(),
            doc,
        }
    }

    /// The schema of `components/schemas/<name>`.
    pub fn schema(&self, name: &str) -> Value {
        json!({ "$ref": format!("#/components/schemas/{name}") })
    }

    /// The response schema the document declares for `method path` and `status` with
    /// `media` (e.g. `application/json`).
    pub fn response_schema(
        &self,
        method: &str,
        path: &str,
        status: u16,
        media: &str,
    ) -> Result<Value, String> {
        let operation = &self.doc["paths"][path][method];
        if operation.is_null() {
            return Err(format!("{}: no operation {method} {path}", self.file));
        }
        let mut response = operation["responses"][status.to_string()].clone();
        if response.is_null() {
            return Err(format!(
                "{}: {method} {path} declares no {status}",
                self.file
            ));
        }
        // A response may itself be a `$ref` into components/responses.
        if let Some(pointer) = response
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix('#'))
        {
            response = self.doc.pointer(pointer).cloned().unwrap_or(Value::Null);
        }
        response["content"][media]["schema"]
            .as_object()
            .map(|s| Value::Object(s.clone()))
            .ok_or_else(|| {
                format!(
                    "{}: {method} {path} {status} has no {media} schema",
                    self.file
                )
            })
    }

    /// Every problem of `body` against `schema` (a schema of this document), joined;
    /// `Ok` when there is none. OpenAPI 3.0 schemas are read as JSON Schema draft 4
    /// with `nullable` honoured.
    pub fn check(&self, schema: &Value, body: &Value) -> Result<(), String> {
        let mut components = self.doc["components"].clone();
        allow_nullable(&mut components);
        let mut schema = schema.clone();
        allow_nullable(&mut schema);
        let root = json!({ "allOf": [schema], "components": components });
        let validator = jsonschema::draft4::options()
            .build(&root)
            .map_err(|e| format!("{}: the schema does not compile: {e}", self.file))?;
        let problems: Vec<String> = validator
            .iter_errors(body)
            .map(|e| format!("{} {e}", e.instance_path()))
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!("{}: {}", self.file, problems.join("; ")))
        }
    }
}

/// OpenAPI 3.0's `nullable: true` means `null` is allowed too; JSON Schema needs it
/// spelled as a type.
fn allow_nullable(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            if map.get("nullable") == Some(&Value::Bool(true)) {
                match map.get_mut("type") {
                    Some(Value::String(t)) => {
                        let t = t.clone();
                        map.insert("type".into(), json!([t, "null"]));
                    }
                    Some(Value::Array(types)) => types.push(json!("null")),
                    _ => {}
                }
            }
            map.values_mut().for_each(allow_nullable);
        }
        Value::Array(items) => items.iter_mut().for_each(allow_nullable),
        _ => {}
    }
}
