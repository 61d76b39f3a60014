//! Docker's `--format`: Go templates (the `gotmpl` crate, a port of Go's
//! text/template) executed over the JSON documents the commands build, with
//! Docker's extra functions, its `table` prefix (headers, tab-aligned
//! columns) and its `json` shorthand.

use gotmpl::{MissingKey, Template, Value};
use std::sync::Arc;

/// What a `--format` value asks for (made once per command: the size
/// difference between variants is irrelevant).
#[allow(clippy::large_enum_variant)]
pub enum Format {
    /// No value, or `table` alone: the command's default table.
    Default,
    /// `json`: one JSON document per line (per object for lists).
    Json,
    /// A Go template, optionally under `table`.
    Template(GoTemplate),
}

pub struct GoTemplate {
    body: Template,
    /// The same text with Docker's header functions, for the header row.
    header: Template,
    table: bool,
}

/// Parses a `--format` value. `list` formatters (ps, network ls ...) turn the
/// two-character sequences `\t` and `\n` into a tab and a newline, as
/// Docker's list formatters do (so `'{{.Names}}\t{{.Status}}'` in single
/// quotes works); inspect does not.
pub fn parse(text: Option<&str>, list: bool) -> Result<Format, String> {
    let Some(text) = text else {
        return Ok(Format::Default);
    };
    let trimmed = text.trim();
    if trimmed.is_empty() || trimmed == "table" {
        return Ok(Format::Default);
    }
    if trimmed == "json" {
        return Ok(Format::Json);
    }
    let (table, body) = match text.trim_start().strip_prefix("table") {
        Some(rest) if rest.starts_with(char::is_whitespace) => (true, rest.trim()),
        _ => (false, text),
    };
    let body = if list {
        body.replace("\\t", "\t").replace("\\n", "\n")
    } else {
        body.to_string()
    };
    let build = |header: bool| {
        let t = Template::new("")
            .missing_key(MissingKey::Error)
            .funcs(if header {
                header_funcs()
            } else {
                docker_funcs()
            });
        t.parse(&body)
            .map_err(|e| format!("template parsing error: {e}"))
    };
    Ok(Format::Template(GoTemplate {
        body: build(false)?,
        header: build(true)?,
        table,
    }))
}

impl GoTemplate {
    /// Under `table`: a header row first (stats redraws such a table).
    pub fn is_table(&self) -> bool {
        self.table
    }

    /// One document through the template (no newline added).
    pub fn render(&self, doc: &serde_json::Value) -> Result<String, String> {
        let v = gotmpl::to_value(doc).map_err(|e| format!("template: {e}"))?;
        self.body
            .execute_to_string(&v)
            .map_err(|e| format!("template parsing error: {e}"))
    }

    /// Rows of a list command: one rendered line per row; under `table`, a
    /// header row first (each field's Docker header from `headers`, else its
    /// name in capitals) and the tab-separated cells aligned.
    pub fn render_list(
        &self,
        rows: &[serde_json::Value],
        headers: &[(&str, &str)],
    ) -> Result<String, String> {
        let mut out = String::new();
        if self.table {
            let mut names = serde_json::Map::new();
            if let Some(serde_json::Value::Object(first)) = rows.first() {
                for k in first.keys() {
                    names.insert(k.clone(), k.to_uppercase().into());
                }
            }
            for (k, h) in headers {
                names.insert(k.to_string(), (*h).into());
            }
            let v = gotmpl::to_value(&serde_json::Value::Object(names))
                .map_err(|e| format!("template: {e}"))?;
            let line = self
                .header
                .execute_to_string(&v)
                .map_err(|e| format!("template parsing error: {e}"))?;
            out.push_str(&line);
            out.push('\n');
        }
        for r in rows {
            out.push_str(&self.render(r)?);
            out.push('\n');
        }
        Ok(if self.table { tabwrite(&out) } else { out })
    }
}

fn string_arg(args: &[Value], i: usize, f: &str) -> gotmpl::Result<String> {
    args.get(i)
        .map(|v| v.to_string())
        .ok_or_else(|| exec_err(format!("wrong number of args for {f}")))
}

fn exec_err(msg: String) -> gotmpl::TemplateError {
    gotmpl::TemplateError::Exec(msg)
}

fn int_arg(args: &[Value], i: usize, f: &str) -> gotmpl::Result<usize> {
    args.get(i)
        .and_then(Value::as_int)
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| exec_err(format!("{f}: argument {} must be a count", i + 1)))
}

/// A template value back as JSON (for `json`).
pub fn to_json(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Value::Nil | Value::Function(_) => J::Null,
        Value::Bool(b) => J::Bool(*b),
        Value::Int(n) => J::from(*n),
        Value::Uint(n) => J::from(*n),
        Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(J::Number)
            .unwrap_or(J::Null),
        Value::String(s) => J::String(s.to_string()),
        Value::List(l) => J::Array(l.iter().map(to_json).collect()),
        Value::Map(m) => J::Object(m.iter().map(|(k, v)| (k.to_string(), to_json(v))).collect()),
    }
}

/// Go's strings.Title: the first letter of each word in upper case.
pub fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    for c in s.chars() {
        if start {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        start = !c.is_alphanumeric() && c != '_' && c != '\'';
    }
    out
}

fn string(s: String) -> Value {
    Value::String(s.into())
}

/// Docker's template functions beyond Go's builtins (which already give
/// `len`, `index`, `println`, `printf`, `eq` ...).
fn docker_funcs() -> gotmpl::FuncMap {
    let mut m = gotmpl::FuncMap::new();
    m.insert(
        "json".into(),
        Arc::new(|a: &[Value]| {
            let v = a.first().map(to_json).unwrap_or(serde_json::Value::Null);
            serde_json::to_string(&v)
                .map(string)
                .map_err(|e| exec_err(e.to_string()))
        }),
    );
    m.insert(
        "join".into(),
        Arc::new(|a: &[Value]| {
            let sep = string_arg(a, 1, "join")?;
            match a.first() {
                Some(Value::List(l)) => Ok(string(
                    l.iter()
                        .map(|v| v.to_string())
                        .collect::<Vec<_>>()
                        .join(&sep),
                )),
                Some(other) => Ok(string(other.to_string())),
                None => Err(exec_err("wrong number of args for join".into())),
            }
        }),
    );
    m.insert(
        "split".into(),
        Arc::new(|a: &[Value]| {
            let s = string_arg(a, 0, "split")?;
            let sep = string_arg(a, 1, "split")?;
            let parts: Vec<Value> = if sep.is_empty() {
                s.chars().map(|c| string(c.to_string())).collect()
            } else {
                s.split(sep.as_str()).map(|p| string(p.into())).collect()
            };
            Ok(Value::List(parts.into()))
        }),
    );
    m.insert(
        "upper".into(),
        Arc::new(|a: &[Value]| Ok(string(string_arg(a, 0, "upper")?.to_uppercase()))),
    );
    m.insert(
        "lower".into(),
        Arc::new(|a: &[Value]| Ok(string(string_arg(a, 0, "lower")?.to_lowercase()))),
    );
    m.insert(
        "title".into(),
        Arc::new(|a: &[Value]| Ok(string(title(&string_arg(a, 0, "title")?)))),
    );
    m.insert(
        "truncate".into(),
        Arc::new(|a: &[Value]| {
            let s = string_arg(a, 0, "truncate")?;
            let n = int_arg(a, 1, "truncate")?;
            Ok(string(s.chars().take(n).collect()))
        }),
    );
    m.insert(
        "pad".into(),
        Arc::new(|a: &[Value]| {
            let s = string_arg(a, 0, "pad")?;
            let l = int_arg(a, 1, "pad")?;
            let r = int_arg(a, 2, "pad")?;
            Ok(string(format!("{}{s}{}", " ".repeat(l), " ".repeat(r))))
        }),
    );
    m
}

/// For the header row Docker's functions give back the header unchanged
/// (`{{json .Labels}}` is headed LABELS, not "\"LABELS\"").
fn header_funcs() -> gotmpl::FuncMap {
    let mut m = gotmpl::FuncMap::new();
    for f in [
        "json", "join", "split", "upper", "lower", "title", "truncate", "pad",
    ] {
        m.insert(
            f.into(),
            Arc::new(|a: &[Value]| Ok(a.first().cloned().unwrap_or(Value::Nil))),
        );
    }
    m
}

/// Go's text/tabwriter as Docker sets it up (minwidth 10, padding 3,
/// spaces): a cell is text ended by a tab; each column is as wide as its
/// widest cell plus the padding, at least the minimum; the text after a
/// line's last tab is not padded.
pub fn tabwrite(text: &str) -> String {
    const MIN_WIDTH: usize = 10;
    const PADDING: usize = 3;
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
    let mut widths: Vec<usize> = vec![];
    for cells in &lines {
        // The last piece is not a cell (no tab ends it).
        for (i, c) in cells.iter().take(cells.len().saturating_sub(1)).enumerate() {
            let w = (c.chars().count() + PADDING).max(MIN_WIDTH);
            match widths.get_mut(i) {
                Some(x) => *x = (*x).max(w),
                None => widths.push(w),
            }
        }
    }
    let mut out = String::new();
    for cells in &lines {
        let last = cells.len().saturating_sub(1);
        for (i, c) in cells.iter().enumerate() {
            out.push_str(c);
            if i < last {
                let pad = widths[i].saturating_sub(c.chars().count());
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tmpl(text: &str, list: bool) -> GoTemplate {
        match parse(Some(text), list) {
            Ok(Format::Template(t)) => t,
            Ok(_) => panic!("{text:?} is not a template"),
            Err(e) => panic!("{text:?}: {e}"),
        }
    }

    fn render(text: &str, doc: serde_json::Value) -> String {
        tmpl(text, false).render(&doc).unwrap()
    }

    #[test]
    fn keywords_pick_the_default_table_and_json() {
        assert!(matches!(parse(None, true), Ok(Format::Default)));
        assert!(matches!(parse(Some("table"), true), Ok(Format::Default)));
        assert!(matches!(parse(Some(" json "), true), Ok(Format::Json)));
        assert!(matches!(
            parse(Some("{{.ID}}"), true),
            Ok(Format::Template(GoTemplate { table: false, .. }))
        ));
        assert!(matches!(
            parse(Some("table {{.ID}}"), true),
            Ok(Format::Template(GoTemplate { table: true, .. }))
        ));
    }

    #[test]
    fn fields_pipelines_and_go_printing() {
        let doc = json!({"State": {"Pid": 42, "Running": true},
            "Config": {"Cmd": ["sh", "-c", "x"], "Labels": {"b": "2", "a": "1"}},
            "Name": "/web"});
        assert_eq!(render("{{.State.Pid}}", doc.clone()), "42");
        assert_eq!(render("{{.State.Running}}", doc.clone()), "true");
        assert_eq!(render("{{.Config.Cmd}}", doc.clone()), "[sh -c x]");
        assert_eq!(render("{{.Config.Labels}}", doc.clone()), "map[a:1 b:2]");
        assert_eq!(render("{{index .Config.Labels \"b\"}}", doc.clone()), "2");
        assert_eq!(render("{{len .Config.Cmd}}", doc.clone()), "3");
        assert_eq!(render("{{.Name | upper}}", doc.clone()), "/WEB");
        assert_eq!(
            render(
                "{{range $k, $v := .Config.Labels}}{{$k}}={{$v}},{{end}}",
                doc
            ),
            "a=1,b=2,"
        );
    }

    #[test]
    fn docker_functions() {
        let doc =
            json!({"L": ["a", "b"], "S": "x,y,z", "M": {"k": [1, "<&>"]}, "N": "hello big world"});
        assert_eq!(render("{{json .M}}", doc.clone()), r#"{"k":[1,"<&>"]}"#);
        assert_eq!(render("{{json .S}}", doc.clone()), r#""x,y,z""#);
        assert_eq!(render("{{join .L \", \"}}", doc.clone()), "a, b");
        assert_eq!(render("{{split .S \",\"}}", doc.clone()), "[x y z]");
        assert_eq!(render("{{index (split .S \",\") 1}}", doc.clone()), "y");
        assert_eq!(render("{{title .N}}", doc.clone()), "Hello Big World");
        assert_eq!(render("{{lower \"AbC\"}}", doc.clone()), "abc");
        assert_eq!(render("{{truncate .N 5}}", doc.clone()), "hello");
        assert_eq!(render("{{pad .S 1 2}}", doc.clone()), " x,y,z  ");
        assert_eq!(render("{{println .S}}", doc), "x,y,z\n");
    }

    #[test]
    fn malformed_templates_and_unknown_fields_are_errors() {
        let e = parse(Some("{{.State.Pid"), false).err().unwrap();
        assert!(e.starts_with("template parsing error:"), "{e}");
        // gotmpl finds an unknown function at the latest when it runs.
        let unknown_func = parse(Some("{{nosuchfunc .X}}"), false).and_then(|f| match f {
            Format::Template(t) => t.render(&json!({"X": 1})),
            _ => Ok(String::new()),
        });
        assert!(unknown_func.unwrap_err().contains("nosuchfunc"));
        let t = tmpl("{{.State.Nope}}", false);
        let e = t.render(&json!({"State": {"Pid": 1}})).unwrap_err();
        assert!(e.contains("Nope"), "{e}");
        assert!(!e.contains('\n'), "one line: {e}");
    }

    #[test]
    fn list_templates_unescape_tabs_and_newlines_inspect_does_not() {
        let row = json!({"Names": "web", "Status": "Up 1 second"});
        assert_eq!(
            tmpl(r"{{.Names}}\t{{.Status}}", true).render(&row).unwrap(),
            "web\tUp 1 second"
        );
        assert_eq!(tmpl(r"{{.Names}}\t", false).render(&row).unwrap(), "web\\t");
    }

    #[test]
    fn table_has_docker_headers_and_aligned_columns() {
        let rows = vec![
            json!({"ID": "0123456789ab", "Names": "web", "Labels": {"a": "1"}}),
            json!({"ID": "ba9876543210", "Names": "a-much-longer-name", "Labels": {}}),
        ];
        let t = tmpl(r"table {{.ID}}\t{{.Names}}\t{{json .Labels}}", true);
        let out = t
            .render_list(&rows, &[("ID", "CONTAINER ID"), ("Names", "NAMES")])
            .unwrap();
        assert_eq!(
            out,
            "CONTAINER ID   NAMES                LABELS\n\
             0123456789ab   web                  {\"a\":\"1\"}\n\
             ba9876543210   a-much-longer-name   {}\n"
        );
        // No rows: the header alone, as Docker prints it.
        assert_eq!(
            t.render_list(
                &[],
                &[
                    ("ID", "CONTAINER ID"),
                    ("Names", "NAMES"),
                    ("Labels", "LABELS")
                ]
            )
            .unwrap(),
            "CONTAINER ID   NAMES     LABELS\n"
        );
    }

    #[test]
    fn tabwriter_pads_to_the_minimum_width() {
        assert_eq!(tabwrite("a\tb\n"), "a         b\n");
        assert_eq!(
            tabwrite("abcdefghij\tb\nx\ty\n"),
            "abcdefghij   b\nx            y\n"
        );
    }
}
