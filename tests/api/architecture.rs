//! The module graph keeps its layers, and every command input keeps its one definition: rules
//! kept by tests, read from the source, as `tenancy_is_structural` keeps tenancy.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Bottom to top. A module may import only from layers below its own: transports → domain →
/// persistence; `config` and `app` assemble everything and nothing imports them back. Two
/// modules of one layer (the two transports, the change feed and auth) do not import each other.
const LAYERS: &[&[&str]] = &[
    &["entity", "db", "telemetry"],
    &["error", "monitoring", "browser"],
    &["incident"],
    &["live", "auth", "webhook"],
    &["graphql", "rest", "desk", "signin"],
    &["config"],
    &["app"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file below `src/`, as (path relative to `src/`, text without comments).
fn sources() -> Vec<(String, String)> {
    let mut files = vec![];
    let mut stack = vec![src()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path
                    .strip_prefix(src())
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                let text = std::fs::read_to_string(&path).unwrap();
                files.push((rel, strip_comments(&text)));
            }
        }
    }
    files.sort();
    files
}

/// Drops `//` comments (doc comments included) and `/* */` blocks, keeping string literals,
/// so a module named in prose is not an import.
fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let (mut in_string, mut escaped) = (false, false);
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => escaped = false,
            }
            continue;
        }
        match (c, chars.peek()) {
            ('"', _) => {
                in_string = true;
                out.push(c);
            }
            ('/', Some('/')) => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            ('/', Some('*')) => {
                chars.next();
                let mut last = ' ';
                for c in chars.by_ref() {
                    if last == '*' && c == '/' {
                        break;
                    }
                    last = c;
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// The top-level module a file belongs to (`graphql/ws.rs` → `graphql`); `None` for the crate
/// root and the binary, which sit above every layer.
fn module_of(file: &str) -> Option<&str> {
    let top = file.split('/').next().unwrap().trim_end_matches(".rs");
    (top != "lib" && top != "main").then_some(top)
}

/// The top-level modules a file names through `crate::…` (groups such as `crate::{a, b::c}`
/// included, over several lines), with the line of each.
fn imports(text: &str) -> Vec<(String, usize)> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut found = vec![];
    for (at, _) in text.match_indices("crate::") {
        let line = text[..at].matches('\n').count() + 1;
        let after = &text[at + "crate::".len()..];
        if let Some(group) = after.strip_prefix('{') {
            let mut depth = 0;
            let mut start = 0;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        found.push((ident(group[start..i].trim()), line));
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        found.push((ident(group[start..i].trim()), line));
                        start = i + 1;
                    }
                    _ => {}
                }
            }
        } else {
            found.push((ident(after), line));
        }
    }
    found.retain(|(name, _)| !name.is_empty());
    found
}

#[test]
fn imports_point_one_way() {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut offenders = vec![];
    for (file, text) in sources() {
        let Some(module) = module_of(&file) else {
            continue;
        };
        let own = layer_of(module)
            .unwrap_or_else(|| panic!("src/{file}: module `{module}` has no layer in LAYERS"));
        for (target, line) in imports(&text) {
            if target == module {
                continue;
            }
            let Some(theirs) = layer_of(&target) else {
                continue; // an item of the crate root, not a module
            };
            graph
                .entry(module.to_string())
                .or_default()
                .insert(target.clone());
            if theirs >= own {
                offenders.push(format!(
                    "src/{file}:{line}: `{module}` (layer {own}) imports `{target}` (layer {theirs})"
                ));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "imports that point up or sideways:\n{}",
        offenders.join("\n")
    );
    // The rule is not vacuous: the layers are really used.
    assert!(graph["graphql"].contains("incident") && graph["rest"].contains("incident"));
    assert!(graph["incident"].contains("entity") && graph["live"].contains("incident"));
    assert!(graph["app"].contains("graphql") && graph["app"].contains("rest"));
}

/// The module path of a file below `src/` (`graphql/schema/mod.rs` → `graphql::schema`).
fn module_path(file: &str) -> Vec<String> {
    let mut parts: Vec<String> = file
        .trim_end_matches(".rs")
        .split('/')
        .map(String::from)
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// Every path a file names through `super::…` or `crate::graphql::…` (groups expanded), as
/// absolute module paths (possibly ending in an item's name).
fn paths_named(file: &str, text: &str) -> Vec<Vec<String>> {
    let own = module_path(file);
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut found = vec![];
    for start in ["super::", "crate::graphql::"] {
        for (at, _) in text.match_indices(start) {
            // Only where a path starts: not `a::super::`, not inside a longer identifier.
            let before = text[..at].chars().last();
            if before.is_some_and(|c| is_ident(c) || c == ':') {
                continue;
            }
            let mut base = if start == "super::" {
                own[..own.len() - 1].to_vec()
            } else {
                vec!["graphql".to_string()]
            };
            let mut rest = &text[at + start.len()..];
            while let Some(after) = rest.strip_prefix("super::") {
                base.pop();
                rest = after;
            }
            // The rest: `a::b::Item`, or `a::{b, c::d}` (one level of group is enough here).
            let head: String = rest
                .chars()
                .take_while(|c| is_ident(*c) || *c == ':')
                .collect();
            let mut path = base.clone();
            path.extend(head.split("::").filter(|s| !s.is_empty()).map(String::from));
            match rest[head.len()..].strip_prefix('{') {
                Some(group) => {
                    let group = &group[..group.find('}').unwrap_or(group.len())];
                    for member in group.split(',') {
                        let mut p = path.clone();
                        p.extend(
                            member
                                .trim()
                                .split("::")
                                .map(|s| s.chars().take_while(|c| is_ident(*c)).collect())
                                .filter(|s: &String| !s.is_empty()),
                        );
                        found.push(p);
                    }
                }
                None => found.push(path),
            }
        }
    }
    found
}

/// Inside `graphql/`: the schema half never names the transports, the shared error rendering
/// names neither half, and no file imports, directly or through others, a file that imports it.
#[test]
fn graphql_halves_have_no_import_circle() {
    let files: Vec<(String, String)> = sources()
        .into_iter()
        .filter(|(f, _)| f.starts_with("graphql/"))
        .collect();
    let modules: BTreeMap<Vec<String>, String> = files
        .iter()
        .map(|(f, _)| (module_path(f), f.clone()))
        .collect();
    // The file a path lands in: the longest prefix of it that is a module of its own.
    let file_of = |path: &[String]| -> Option<String> {
        (1..=path.len())
            .rev()
            .find_map(|n| modules.get(&path[..n]).cloned())
    };
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut offenders = vec![];
    for (file, text) in &files {
        for path in paths_named(file, text) {
            let Some(target) = file_of(&path) else {
                continue;
            };
            if &target == file {
                continue;
            }
            let half = |f: &str| {
                f.split('/')
                    .nth(1)
                    .unwrap_or("")
                    .trim_end_matches(".rs")
                    .to_string()
            };
            let (from, to) = (half(file), half(&target));
            if (from == "schema" && to == "transport")
                || (from == "error" && (to == "schema" || to == "transport"))
            {
                offenders.push(format!("src/{file} names src/{target}"));
            }
            edges.entry(file.clone()).or_default().insert(target);
        }
    }
    assert!(
        offenders.is_empty(),
        "imports against the halves of graphql/:\n{}",
        offenders.join("\n")
    );
    // A circle: a file that reaches itself.
    for start in edges.keys() {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<(String, Vec<String>)> = vec![(start.clone(), vec![start.clone()])];
        while let Some((at, trail)) = stack.pop() {
            for next in edges.get(&at).into_iter().flatten() {
                if next == start {
                    panic!(
                        "an import circle in graphql/: {} → {next}",
                        trail.join(" → ")
                    );
                }
                if seen.insert(next.clone()) {
                    let mut trail = trail.clone();
                    trail.push(next.clone());
                    stack.push((next.clone(), trail));
                }
            }
        }
    }
    // The check is not vacuous: resolvers reach the context, transports the operation path.
    assert!(edges["graphql/schema/query.rs"].contains("graphql/schema/context.rs"));
    assert!(edges["graphql/transport/http.rs"].contains("graphql/transport/operation.rs"));
    assert!(edges["graphql/transport/operation.rs"].contains("graphql/schema/context.rs"));
}

/// A struct: its name, whether a client can send it (it derives `Deserialize` or
/// `InputObject`), and its named fields.
type Struct = (String, bool, BTreeSet<String>);

/// Every `struct Name { … }` in `text`.
fn structs(text: &str) -> Vec<Struct> {
    let mut found = vec![];
    let mut rest = text;
    while let Some(at) = rest.find("struct ") {
        // The attributes are what stands between the previous item and this one.
        let before = &rest[..at];
        let attributes = &before[before.rfind(['}', ';']).map_or(0, |i| i + 1)..];
        let input = attributes.contains("Deserialize") || attributes.contains("InputObject");
        let after = &rest[at + "struct ".len()..];
        let name: String = after
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let header_end = after.find(['{', ';', '(']).unwrap_or(after.len());
        rest = &after[header_end.min(after.len())..];
        if !after[header_end..].starts_with('{') {
            continue;
        }
        let mut depth = 0;
        let mut body_end = 0;
        for (i, c) in rest.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        body_end = i;
                        break;
                    }
                }
                _ => {}
            }
        }
        let body = &rest[1..body_end];
        let mut fields = BTreeSet::new();
        let mut nesting = 0;
        for part in body.split_inclusive([',', '<', '>', '(', ')', '[', ']']) {
            if nesting == 0
                && let Some((left, _)) = part.split_once(':')
            {
                let ident = left
                    .split_whitespace()
                    .last()
                    .unwrap_or("")
                    .trim_start_matches("r#");
                if !ident.is_empty() && ident.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                {
                    fields.insert(ident.to_string());
                }
            }
            for c in part.chars() {
                match c {
                    '<' | '(' | '[' => nesting += 1,
                    '>' | ')' | ']' if nesting > 0 => nesting -= 1,
                    _ => {}
                }
            }
        }
        found.push((name, input, fields));
        rest = &rest[body_end..];
    }
    found
}

/// Each write's input (and the filter) is defined once, in `incident/input.rs`, and parsed
/// there; transports convert into it. A struct elsewhere with all of a command's fields, a GraphQL
/// input object elsewhere, or a field parser called elsewhere is a second definition.
#[test]
fn every_command_input_is_defined_once() {
    let files = sources();
    let input = &files
        .iter()
        .find(|(f, _)| f == "incident/input.rs")
        .expect("incident/input.rs exists")
        .1;
    let commands: Vec<(String, BTreeSet<String>)> = structs(input)
        .into_iter()
        .map(|(name, _, fields)| (name, fields))
        .filter(|(name, _)| {
            [
                "CreateIncident",
                "UpdateIncident",
                "AddEvent",
                "Transition",
                "PostmortemInput",
                "IncidentFilterInput",
                "ActionItem",
            ]
            .contains(&name.as_str())
        })
        .collect();
    assert_eq!(
        commands.len(),
        7,
        "the command inputs are found: {commands:?}"
    );
    assert!(commands.iter().all(|(_, fields)| fields.len() >= 2));

    let parsers = [
        "Title::parse",
        "EventType::parse",
        "Content::parse",
        "TicketIds::parse",
    ];
    let mut offenders = vec![];
    for (file, text) in &files {
        if file == "incident/input.rs" {
            continue;
        }
        for (name, input, fields) in structs(text) {
            for (command, wanted) in &commands {
                if input && wanted.is_subset(&fields) {
                    offenders.push(format!(
                        "src/{file}: struct {name} repeats the fields of {command}"
                    ));
                }
            }
        }
        for (n, line) in text.lines().enumerate() {
            if line.contains("derive(") && line.contains("InputObject") {
                offenders.push(format!("src/{file}:{}: a GraphQL input object", n + 1));
            }
            for parser in parsers {
                if line.contains(parser) {
                    offenders.push(format!("src/{file}:{}: calls {parser}", n + 1));
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "second definitions of command inputs (define and parse them in incident/input.rs):\n{}",
        offenders.join("\n")
    );
}

#[test]
fn the_checks_see_what_they_look_for() {
    let text = strip_comments(
        "// crate::app in prose\nuse crate::{\n    db::Db,\n    error::{AppError, code},\n};\n#[derive(Debug, Deserialize)]\nstruct Mirror { pub id: Option<Uuid>, title: String, severity: Severity, map: HashMap<String, u8> }\nstruct Out { id: Uuid }",
    );
    let names: Vec<String> = imports(&text).into_iter().map(|(n, _)| n).collect();
    assert!(names.contains(&"db".to_string()) && names.contains(&"error".to_string()));
    assert!(
        !names.contains(&"app".to_string()),
        "comments are not imports"
    );
    let found = structs(&text);
    let paths = paths_named(
        "graphql/schema/query.rs",
        "use super::context::{domain, principal};\nuse crate::graphql::error::GqlResult;\nx(super::super::transport::y)",
    );
    let joined: Vec<String> = paths.iter().map(|p| p.join("::")).collect();
    assert_eq!(
        joined,
        [
            "graphql::schema::context::domain",
            "graphql::schema::context::principal",
            "graphql::transport::y",
            "graphql::error::GqlResult",
        ]
    );
    assert_eq!((found[0].0.as_str(), found[0].1), ("Mirror", true));
    assert_eq!((found[1].0.as_str(), found[1].1), ("Out", false));
    assert_eq!(
        found[0].2,
        ["id", "map", "severity", "title"]
            .into_iter()
            .map(String::from)
            .collect()
    );
}
