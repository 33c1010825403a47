//! Where each key of a YAML document stands, so validation errors can name a line.
//! Keys are written as paths: `amazon.accounts[0].schedule`.

use std::collections::HashMap;

use saphyr::{LoadableYamlNode, MarkedYaml, YamlData};

#[derive(Debug, Default)]
pub struct LineIndex {
    lines: HashMap<String, usize>,
}

impl LineIndex {
    /// Index a document; text that does not parse yields an empty index (serde reports
    /// the parse error with its own position before validation runs).
    pub fn build(text: &str) -> Self {
        let mut index = LineIndex::default();
        if let Ok(docs) = MarkedYaml::load_from_str(text)
            && let Some(root) = docs.first()
        {
            index.walk(root, String::new());
        }
        index
    }

    /// The line of `key`, or of its nearest indexed parent.
    pub fn line_of(&self, key: &str) -> Option<usize> {
        let mut key = key;
        loop {
            if let Some(line) = self.lines.get(key) {
                return Some(*line);
            }
            let cut = key.rfind(['.', '['])?;
            key = &key[..cut];
        }
    }

    fn walk(&mut self, node: &MarkedYaml<'_>, path: String) {
        match &node.data {
            YamlData::Mapping(map) => {
                for (key, value) in map {
                    let Some(name) = key.data.as_str() else {
                        continue;
                    };
                    let child = if path.is_empty() {
                        name.to_owned()
                    } else {
                        format!("{path}.{name}")
                    };
                    self.lines.insert(child.clone(), key.span.start.line());
                    self.walk(value, child);
                }
            }
            YamlData::Sequence(items) => {
                for (i, item) in items.iter().enumerate() {
                    let child = format!("{path}[{i}]");
                    self.lines.insert(child.clone(), item.span.start.line());
                    self.walk(item, child);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_keys_and_sequence_items_have_lines() {
        let text = "store:\n  url: x\namazon:\n  accounts:\n    - name: a\n      schedule: bad\n    - name: b\n";
        let index = LineIndex::build(text);
        assert_eq!(index.line_of("store.url"), Some(2));
        assert_eq!(index.line_of("amazon.accounts[0].schedule"), Some(6));
        assert_eq!(index.line_of("amazon.accounts[1].name"), Some(7));
        // An absent key falls back to its parent.
        assert_eq!(index.line_of("amazon.accounts[1].region"), Some(7));
    }
}
