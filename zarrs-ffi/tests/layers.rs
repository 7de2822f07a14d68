//! The crate's modules form layers that point one way: a module may use modules of its own
//! layer or of lower ones, never of a higher one, and no two modules use each other (directly
//! or through others).
//!
//! Read from the source text: every `crate::<module>` path (including grouped `use
//! crate::{a, b}`) outside comments counts as a use of that top-level module. A top-level
//! module is a file `src/<module>.rs` or a directory `src/<module>/`. A new module must be
//! added to [`LAYERS`] (and to the order in `src/lib.rs`'s module doc, which this test checks).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, lowest first. Keep in step with the order in `src/lib.rs`.
const LAYERS: &[&[&str]] = &[
    &["error"],
    &["panic"],
    &["args", "memory", "registry"],
    &["process"],
    &["layout"],
    &["bounds", "engine"],
    &["options"],
    &["storage"],
    &["handles"],
    &["ffi"],
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable source directory") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a source file belongs to (None: `lib.rs`, the crate root).
fn top_module(src: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(src).expect("file under src");
    let first = relative.components().next()?.as_os_str().to_str()?.to_string();
    match first.strip_suffix(".rs") {
        Some("lib") => None,
        Some(stem) => Some(stem.to_string()),
        None => Some(first),
    }
}

/// The text without `//` comments (doc comments included: a doc link is not a use).
fn strip_comments(text: &str) -> String {
    text.lines()
        .map(|line| line.find("//").map_or(line, |at| &line[..at]))
        .collect::<Vec<_>>()
        .join("\n")
}

fn ident_at(text: &str) -> &str {
    let end = text.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(text.len());
    &text[..end]
}

/// Every top-level module named after `crate::` in `code`.
fn crate_references(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // `crate::{a, b::c, d::{e, f}}`: the first identifier of each item at depth 0.
            let mut depth = 0;
            let mut item_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && (c.is_alphanumeric() || c == '_') => {
                        found.insert(ident_at(&group[i..]).to_string());
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            let ident = ident_at(rest);
            if !ident.is_empty() {
                found.insert(ident.to_string());
            }
        }
    }
    found
}

/// module -> the other top-level modules it uses.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let Some(module) = top_module(&src, &file) else { continue };
        let code = strip_comments(&std::fs::read_to_string(&file).expect("readable source file"));
        let uses = graph.entry(module.clone()).or_default();
        uses.extend(crate_references(&code).into_iter().filter(|m| *m != module));
    }
    graph
}

/// Every cycle of the graph, each as a path `a -> b -> ... -> a` (found by depth-first search
/// from each module; each cycle is reported once per module set).
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    fn visit(
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<BTreeSet<String>>,
        out: &mut Vec<String>,
    ) {
        let current = path.last().expect("non-empty path").clone();
        for next in graph.get(&current).into_iter().flatten() {
            if let Some(at) = path.iter().position(|m| m == next) {
                let cycle: Vec<String> = path[at..].to_vec();
                if seen.insert(cycle.iter().cloned().collect()) {
                    out.push(format!("{} -> {next}", cycle.join(" -> ")));
                }
            } else if path.len() < graph.len() {
                path.push(next.clone());
                visit(graph, path, seen, out);
                path.pop();
            }
        }
    }
    let (mut seen, mut out) = (BTreeSet::new(), Vec::new());
    for start in graph.keys() {
        visit(graph, &mut vec![start.clone()], &mut seen, &mut out);
    }
    out
}

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// The order as written in `src/lib.rs`'s module doc: layers joined by ` → `, modules of one
/// layer by ` + `.
fn documented_order() -> String {
    LAYERS.iter().map(|layer| layer.join(" + ")).collect::<Vec<_>>().join(" → ")
}

#[test]
fn modules_form_layers_without_cycles() {
    let graph = module_graph();
    let mut problems = Vec::new();
    for cycle in cycles(&graph) {
        problems.push(format!("import cycle: {cycle}"));
    }
    for (module, uses) in &graph {
        let Some(layer) = layer_of(module) else {
            problems.push(format!("module `{module}` is in no layer: add it to LAYERS in tests/layers.rs"));
            continue;
        };
        for used in uses {
            match layer_of(used) {
                Some(used_layer) if used_layer > layer => problems.push(format!(
                    "`{module}` (layer {layer}) uses `crate::{used}` from the higher layer {used_layer}"
                )),
                Some(_) => {}
                None => problems.push(format!("`{module}` uses `crate::{used}`, which is in no layer")),
            }
        }
    }
    assert!(problems.is_empty(), "the crate's layering is broken:\n  {}", problems.join("\n  "));
}

#[test]
fn lib_docs_state_the_layer_order() {
    let lib = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).expect("lib.rs");
    let docs: String = lib
        .lines()
        .filter_map(|line| line.trim_start().strip_prefix("//!"))
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ");
    let expected = documented_order();
    assert!(docs.contains(&expected), "src/lib.rs's module doc must state the layer order `{expected}`");
}

#[test]
fn the_checker_sees_grouped_and_plain_paths() {
    let code = strip_comments("use crate::{args, engine::{A, B}, error::FfiError};\nlet x = crate::layout::f(); // crate::ffi");
    let found: Vec<String> = crate_references(&code).into_iter().collect();
    assert_eq!(found, ["args", "engine", "error", "layout"]);
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a".to_string(), BTreeSet::from(["b".to_string()])),
        ("b".to_string(), BTreeSet::from(["a".to_string()])),
    ]
    .into();
    assert_eq!(cycles(&graph), ["a -> b -> a"]);
}
