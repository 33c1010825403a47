//! Swagger 2.0 models (Amazon's `specs/amazon/*.json`): find an operation's response
//! schema, validate a body against it with `jsonschema` (draft 4, formats checked) and
//! then strictly, reporting every property the schema does not declare at its place, and
//! validate whole SP-API answers (status, body, `x-amzn-RequestId`, rate).
//! Use from a test file with `#[path = "common/swagger.rs"] mod swagger;`.
#![allow(dead_code)]

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

/// One model file.
pub struct Spec {
    pub file: &'static str,
    pub doc: Value,
}

impl Spec {
    pub fn load(file: &'static str) -> Spec {
        let dir = std::env::var("NIGHTDESK_SPECS_DIR")
            .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/specs/amazon").to_owned());
        let path = format!("{dir}/{file}");
        // Without the models this test cannot check anything: fail, never pass.
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) => panic!("cannot read the contract {path}: {e} (set NIGHTDESK_SPECS_DIR)"),
        };
        let doc = match serde_json::from_str::<Value>(&text) {
            Ok(doc) => doc,
            Err(e) => panic!("{path} is not JSON: {e}"),
        };
        assert_eq!(
            doc["swagger"], "2.0",
            "{file}: only Swagger 2.0 models are handled"
        );
        Spec { file, doc }
    }

    /// The operation's `responses` object.
    pub fn responses(&self, operation_id: &str) -> Option<&Map<String, Value>> {
        self.doc["paths"]
            .as_object()?
            .values()
            .filter_map(Value::as_object)
            .flat_map(|methods| methods.values())
            .find(|op| op["operationId"] == operation_id)?["responses"]
            .as_object()
    }

    /// The schema the model declares for `status`, `Ok(None)` when it declares the
    /// status without a body; an error when it does not declare the status at all.
    pub fn response_schema(
        &self,
        operation_id: &str,
        status: u16,
    ) -> Result<Option<Value>, String> {
        let responses = self
            .responses(operation_id)
            .ok_or_else(|| format!("{}: no operation {operation_id}", self.file))?;
        let response = responses.get(&status.to_string()).ok_or_else(|| {
            format!(
                "{}: {operation_id} declares no {status} response (it declares {:?})",
                self.file,
                responses.keys().collect::<Vec<_>>()
            )
        })?;
        Ok(response.get("schema").cloned())
    }

    /// The schema the model declares for `status`; an error when it declares the
    /// status without a body, or not at all.
    pub fn body_schema(&self, operation_id: &str, status: u16) -> Result<Value, String> {
        self.response_schema(operation_id, status)?
            .ok_or_else(|| format!("{}: {operation_id} {status} has no schema", self.file))
    }

    /// Reads one answer of `operation_id` and validates it against the model: the
    /// status must be one the model declares, the body must match that status's schema
    /// (or be empty when it has none), every answer carries `x-amzn-RequestId`, and
    /// with `stated_rate` every 2xx a usable `x-amzn-RateLimit-Limit`. `label` names
    /// the call in failures. The status and the body (`null` when empty).
    pub async fn read_answer(
        &self,
        operation_id: &str,
        label: &str,
        response: reqwest::Response,
        stated_rate: bool,
    ) -> Result<(u16, Value), String> {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| format!("{label} answered {status}, unreadable: {e}"))?;
        let schema = self
            .response_schema(operation_id, status)
            .map_err(|e| format!("{label} answered {status}: {e}"))?;
        let body = match schema {
            Some(schema) => {
                let body: Value = serde_json::from_slice(&bytes).map_err(|e| {
                    format!(
                        "{label} {status}: body is not JSON ({e}): {}",
                        String::from_utf8_lossy(&bytes)
                    )
                })?;
                self.check_body(&schema, &body).map_err(|problems| {
                    format!(
                        "{label} {status} breaks {}: {problems}\nbody: {body}",
                        self.file
                    )
                })?;
                body
            }
            None => {
                assert!(
                    bytes.is_empty(),
                    "{label} {status}: the model declares no body, got {}",
                    String::from_utf8_lossy(&bytes)
                );
                Value::Null
            }
        };
        assert!(
            headers.contains_key("x-amzn-requestid"),
            "{label} {status}: no x-amzn-RequestId"
        );
        if stated_rate && (200..300).contains(&status) {
            let rate = headers
                .get("x-amzn-ratelimit-limit")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<f64>().ok());
            assert!(
                rate.is_some_and(|r| r > 0.0),
                "{label} {status}: no usable x-amzn-RateLimit-Limit"
            );
        }
        Ok((status, body))
    }

    /// Validates `body` against `schema` (a schema of this model): the model's own
    /// constraints with `jsonschema`, then no undeclared property anywhere.
    pub fn check_body(&self, schema: &Value, body: &Value) -> Result<(), String> {
        // Draft 4 ignores keywords beside `$ref`, so the response schema goes in an
        // `allOf` next to the model's definitions, which the `$ref`s point into.
        let root = json!({
            "allOf": [schema],
            "definitions": self.doc["definitions"],
        });
        let validator = jsonschema::draft4::options()
            .should_validate_formats(true)
            .build(&root)
            .map_err(|e| format!("{}: the schema does not compile: {e}", self.file))?;
        let mut problems: Vec<String> = validator
            .iter_errors(body)
            .map(|e| format!("{} {e}", e.instance_path()))
            .collect();
        let mut undeclared = Vec::new();
        self.walk(schema, body, "", &mut undeclared);
        problems.extend(
            undeclared
                .into_iter()
                .map(|path| format!("{path} is not declared in the schema")),
        );
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }

    /// `#/definitions/Name` → the definition; other schemas as they are.
    fn resolve<'a>(&'a self, mut schema: &'a Value) -> &'a Value {
        // A cycle of pure `$ref`s would loop; the models have none, but stay bounded.
        for _ in 0..32 {
            let Some(reference) = schema.get("$ref").and_then(Value::as_str) else {
                return schema;
            };
            let Some(pointer) = reference.strip_prefix('#') else {
                return &Value::Null;
            };
            schema = self.doc.pointer(pointer).unwrap_or(&Value::Null);
        }
        schema
    }

    /// The schema and every `allOf` branch under it, resolved.
    fn parts<'a>(&'a self, schema: &'a Value, out: &mut Vec<&'a Value>) {
        let schema = self.resolve(schema);
        out.push(schema);
        for branch in schema
            .get("allOf")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            self.parts(branch, out);
        }
    }

    /// Collects the JSON pointer of every property of `value` that `schema` does not
    /// declare (following `$ref`, `allOf`, `properties`, `additionalProperties`,
    /// `items`).
    fn walk(&self, schema: &Value, value: &Value, path: &str, out: &mut Vec<String>) {
        let mut parts = Vec::new();
        self.parts(schema, &mut parts);
        match value {
            Value::Object(fields) => {
                let declared: BTreeMap<&str, &Value> = parts
                    .iter()
                    .filter_map(|p| p.get("properties").and_then(Value::as_object))
                    .flat_map(|props| props.iter().map(|(k, v)| (k.as_str(), v)))
                    .collect();
                let additional = parts.iter().find_map(|p| p.get("additionalProperties"));
                // A free-form object (`type: object`, nothing declared) allows anything.
                if declared.is_empty() && additional.is_none() {
                    return;
                }
                for (key, child) in fields {
                    let child_path = format!("{path}/{key}");
                    match (declared.get(key.as_str()), additional) {
                        (Some(child_schema), _) => self.walk(child_schema, child, &child_path, out),
                        (None, Some(Value::Bool(true))) => {}
                        (None, Some(extra @ Value::Object(_))) => {
                            self.walk(extra, child, &child_path, out)
                        }
                        (None, _) => out.push(child_path),
                    }
                }
            }
            Value::Array(items) => {
                if let Some(item_schema) = parts.iter().find_map(|p| p.get("items")) {
                    for (index, item) in items.iter().enumerate() {
                        self.walk(item_schema, item, &format!("{path}/{index}"), out);
                    }
                }
            }
            _ => {}
        }
    }
}
