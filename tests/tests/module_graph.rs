//! The module graph of every library crate is acyclic: no module reaches back to one that reaches
//! it. A cycle means two modules are really one concern, or a type sits in the wrong layer.
//!
//! An edge `a -> b` is any path `crate::b…` (or `super::…` resolved) written in module `a`'s file,
//! outside comments and `#[cfg(test)] mod tests`. Edges point at the longest module path that
//! exists, so `crate::text::split::fnv1a` is an edge to `text::split`; a parent module's edges to
//! its own children (declaring and re-exporting them) are containment, not dependency.
//! No crate parses Rust module graphs without compiling (cargo-modules needs rust-analyzer), so
//! this reads the sources as text: enough for `use` lines and paths, which is what it checks.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use messaging_tests::rust_files;

const CRATES: &[&str] = &[
    "messaging-core",
    "messaging-cascade",
    "messaging-hygiene",
    "messaging-conversations",
    "messaging-waba",
    "messaging-telegram",
    "messaging-max",
    "messaging-sms",
    "messaging-store",
    "messaging",
];

/// `src/a/b.rs` and `src/a/b/mod.rs` are `a::b`; `src/lib.rs` is the root, "".
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file
        .strip_prefix(src)
        .expect("under src")
        .with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|l| l == "mod" || l == "lib") {
        parts.pop();
    }
    parts.join("::")
}

/// The file's code without comments and without its unit-test module.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Module paths mentioned after `prefix` (`crate::`), as identifier chains; a group
/// (`crate::a::{B, c::D}`) gives one chain per member.
fn paths_after<'a>(code: &'a str, prefix: &str) -> Vec<Vec<&'a str>> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find(prefix) {
        let before = rest[..i].chars().last();
        rest = &rest[i + prefix.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        chains(rest, Vec::new(), &mut out);
    }
    out
}

fn chains<'a>(mut s: &'a str, mut chain: Vec<&'a str>, out: &mut Vec<Vec<&'a str>>) {
    loop {
        let end = s
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(s.len());
        if end == 0 {
            break;
        }
        chain.push(&s[..end]);
        match s[end..].strip_prefix("::") {
            Some(next) => s = next,
            None => break,
        }
    }
    if let Some(group) = s.strip_prefix('{') {
        // Split the group's members at top-level commas.
        let (mut depth, mut start) = (0usize, 0usize);
        for (i, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    chains(group[start..i].trim_start(), chain.clone(), out);
                    return;
                }
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    chains(group[start..i].trim_start(), chain.clone(), out);
                    start = i + 1;
                }
                _ => {}
            }
        }
    } else if !chain.is_empty() {
        out.push(chain);
    }
}

/// The names a module re-exports from its children: `pub use child::{A, B}` maps `A` and `B` to
/// `module::child`.
fn reexports(module: &str, code: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for stmt in code.split(';') {
        let stmt = stmt.trim();
        let Some(rest) = stmt.strip_prefix("pub use ") else {
            continue;
        };
        let rest = rest.strip_prefix("self::").unwrap_or(rest);
        for chain in {
            let mut v = Vec::new();
            chains(rest, Vec::new(), &mut v);
            v
        } {
            if chain.len() >= 2 {
                let child = if module.is_empty() {
                    chain[0].to_owned()
                } else {
                    format!("{module}::{}", chain[0])
                };
                out.insert(chain[chain.len() - 1].to_owned(), child);
            }
        }
    }
    out
}

fn graph(crate_dir: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let src = crate_dir.join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: BTreeMap<String, PathBuf> = files
        .iter()
        .map(|f| (module_of(&src, f), f.clone()))
        .collect();
    let codes: BTreeMap<&String, String> = modules
        .iter()
        .map(|(m, f)| {
            (
                m,
                code(&std::fs::read_to_string(f).expect("readable source")),
            )
        })
        .collect();
    let exported: BTreeMap<&String, BTreeMap<String, String>> =
        codes.iter().map(|(m, c)| (*m, reexports(m, c))).collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for module in modules.keys() {
        let code = &codes[module];
        let parent: Vec<&str> = module.split("::").filter(|s| !s.is_empty()).collect();
        let mut targets: Vec<Vec<String>> = paths_after(code, "crate::")
            .into_iter()
            .map(|c| c.into_iter().map(str::to_owned).collect())
            .collect();
        for chain in paths_after(code, "super::") {
            let mut base: Vec<String> = parent.iter().map(|s| (*s).to_owned()).collect();
            base.pop();
            base.extend(chain.into_iter().map(str::to_owned));
            targets.push(base);
        }
        for chain in targets {
            // The longest prefix of the chain that is a module of this crate, followed through
            // the re-exports of a parent (`crate::engine::CascadeRecord` is `engine::record`).
            let mut target = None;
            for n in (0..=chain.len()).rev() {
                let m = chain[..n].join("::");
                if modules.contains_key(&m) {
                    let mut t = m;
                    if let Some(name) = chain.get(n)
                        && let Some(child) = exported.get(&t).and_then(|e| e.get(name))
                        && modules.contains_key(child)
                    {
                        t = child.clone();
                    }
                    target = Some(t);
                    break;
                }
            }
            if let Some(t) = target
                && &t != module
                && !module.starts_with(&format!("{t}::"))
                && !t.is_empty()
            {
                edges.entry(module.clone()).or_default().insert(t);
            }
        }
        // A parent that declares children does not depend on them through `mod`/`pub use`.
        edges.entry(module.clone()).or_default();
    }
    // Parents only re-export: drop edges from a module to its own descendants.
    for (m, ts) in edges.iter_mut() {
        ts.retain(|t| m.is_empty() || !t.starts_with(&format!("{m}::")));
    }
    edges
}

fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<(String, String)> {
    let reaches = |from: &str, to: &str| {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.to_owned()];
        while let Some(n) = stack.pop() {
            if n == to {
                return true;
            }
            if seen.insert(n.clone())
                && let Some(next) = edges.get(&n)
            {
                stack.extend(next.iter().cloned());
            }
        }
        false
    };
    let mut out = Vec::new();
    for (a, ts) in edges {
        for b in ts {
            if reaches(b, a) {
                out.push((a.clone(), b.clone()));
            }
        }
    }
    out
}

#[test]
fn no_library_crate_has_a_module_cycle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut found = Vec::new();
    for krate in CRATES {
        let edges = graph(&root.join(krate));
        assert!(
            edges.len() > 1 || *krate == "messaging",
            "{krate}: modules were read"
        );
        for (a, b) in cycles(&edges) {
            found.push(format!("{krate}: {a} -> {b} -> … -> {a}"));
        }
    }
    assert!(found.is_empty(), "module cycles:\n{}", found.join("\n"));
}

#[test]
fn the_checker_sees_a_cycle() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("a")).unwrap();
    std::fs::write(src.join("lib.rs"), "mod a;\nmod b;\n").unwrap();
    std::fs::write(src.join("a/mod.rs"), "mod inner;\npub use inner::X;\n").unwrap();
    std::fs::write(src.join("a/inner.rs"), "use crate::b::Y;\npub struct X;\n").unwrap();
    std::fs::write(
        src.join("b.rs"),
        "use crate::a::{X, inner};\npub struct Y;\n",
    )
    .unwrap();
    let edges = graph(dir.path());
    assert_eq!(edges["a::inner"], BTreeSet::from(["b".to_owned()]));
    assert_eq!(
        edges["a"],
        BTreeSet::new(),
        "declaring a child is not depending on it"
    );
    assert_eq!(
        edges["b"],
        BTreeSet::from(["a::inner".to_owned()]),
        "through a's re-export"
    );
    assert_eq!(cycles(&edges).len(), 2, "a::inner -> b -> a::inner");
}
