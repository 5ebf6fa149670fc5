//! Reference lists (`[lists.NAME]`): CSV files read once, as sets (`country in
//! blocked_countries`) or typed maps (`merchant_risk[merchant] ?? 0`), bound read-only in
//! every rule. A list is one shared value: rules get a `ListRef` (an `Arc`), registered
//! with Rhai as a custom type with an indexer and `contains` (what `in` calls), so no
//! evaluation ever copies a list. A key missing from a map (or a set) gives `()`, which
//! `??` replaces.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rhai::{Dynamic, Engine, INT, ImmutableString};

use crate::model::ColumnType;
use crate::rules::lists_windows::ListDecl;

/// Key → value, hashed with ahash under seeds drawn per process: std's SipHash was a fifth
/// of loading a million-key list, and seeds a list's author cannot know keep its keys from
/// being chosen to collide.
type Entries = HashMap<Box<str>, Dynamic, ahash::RandomState>;

/// One list's contents.
#[derive(Debug)]
pub struct List {
    pub name: String,
    /// Key → value; a set's values are `true`.
    entries: Entries,
    is_map: bool,
}

impl List {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether `other` holds exactly these keys and values, of the same types.
    pub fn same_contents(&self, other: &List) -> bool {
        let same = |a: &Dynamic, b: &Dynamic| match (a.as_float(), b.as_float()) {
            (Ok(x), Ok(y)) => x.to_bits() == y.to_bits(),
            _ => a.type_name() == b.type_name() && a.to_string() == b.to_string(),
        };
        self.is_map == other.is_map
            && self.entries.len() == other.entries.len()
            && self
                .entries
                .iter()
                .all(|(k, v)| other.entries.get(k).is_some_and(|w| same(v, w)))
    }

    fn get(&self, key: &str) -> Option<&Dynamic> {
        self.entries.get(key)
    }

    /// A list given directly by a `txguard check` example: an array of keys for a set, a
    /// table of key = value for a map.
    pub fn from_toml(decl: &ListDecl, value: &toml::Value) -> Result<List, String> {
        let mut entries = Entries::with_hasher(crate::windows::keys::random_seeds());
        let key_text = |v: &toml::Value| match v {
            toml::Value::String(s) => Some(s.clone()),
            toml::Value::Integer(i) => Some(i.to_string()),
            _ => None,
        };
        match (&decl.value, value) {
            (None, toml::Value::Array(keys)) => {
                for k in keys {
                    let k = key_text(k).ok_or_else(|| {
                        format!("list {:?}: key {k} is not a string or an int", decl.name)
                    })?;
                    entries.insert(k.into_boxed_str(), Dynamic::TRUE);
                }
            }
            (Some(_), toml::Value::Table(table)) => {
                for (k, v) in table {
                    let typed = crate::cmd::check::typed(v, decl.kind).ok_or_else(|| {
                        format!(
                            "list {:?}: value {v} of key {k:?} is not of type {}",
                            decl.name,
                            decl.kind.name()
                        )
                    })?;
                    entries.insert(k.clone().into_boxed_str(), typed);
                }
            }
            (None, _) => {
                return Err(format!(
                    "list {:?} is a set: give its keys as an array",
                    decl.name
                ));
            }
            (Some(_), _) => {
                return Err(format!(
                    "list {:?} is a map: give it as a table of key = value",
                    decl.name
                ));
            }
        }
        Ok(List {
            name: decl.name.clone(),
            entries,
            is_map: decl.value.is_some(),
        })
    }
}

/// A list file's problem, located: `lists/risk.csv:7: column "risk": "high" is not an int`.
#[derive(Debug, Clone, PartialEq)]
pub struct ListError {
    /// The `[lists.NAME]` it belongs to.
    pub list: String,
    /// Line of the rules file declaring the list.
    pub decl_line: usize,
    pub message: String,
}

impl fmt::Display for ListError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[lists.{}]: {}", self.list, self.message)
    }
}

/// Where a list's file is: relative paths are relative to the rules file's folder.
pub fn path_of(decl: &ListDecl, rules_path: &Path) -> PathBuf {
    let file = Path::new(&decl.file);
    if file.is_absolute() {
        return file.to_path_buf();
    }
    match rules_path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join(file),
        _ => file.to_path_buf(),
    }
}

/// Reads every list file of `decls` once: their bytes, in declaration order.
pub fn read_files(decls: &[ListDecl], rules_path: &Path) -> Result<Vec<Vec<u8>>, Vec<ListError>> {
    let mut files = Vec::with_capacity(decls.len());
    let mut errors = Vec::new();
    for decl in decls {
        let path = path_of(decl, rules_path);
        match read_capped(&path) {
            Ok(bytes) => files.push(bytes),
            Err(e) => {
                errors.push(ListError {
                    list: decl.name.clone(),
                    decl_line: decl.line,
                    message: format!("cannot read {}: {e}", path.display()),
                });
                files.push(Vec::new());
            }
        }
    }
    if errors.is_empty() {
        Ok(files)
    } else {
        Err(errors)
    }
}

/// The largest list file: lists are held in memory, parsed, and sent to every worker.
pub const MAX_LIST_BYTES: u64 = 1 << 30;

/// Reads a list file, refusing one over `MAX_LIST_BYTES` (or one without end, such as a
/// device) instead of filling memory.
pub fn read_capped(path: &Path) -> std::io::Result<Vec<u8>> {
    crate::size::read_capped(path, MAX_LIST_BYTES, "too large for a list")
}

/// Parses one list file's bytes (`shown` names it in messages). Every problem of the file
/// is returned (up to a few per kind), not only the first.
pub fn parse(decl: &ListDecl, shown: &str, bytes: &[u8]) -> Result<List, Vec<ListError>> {
    let fail = |message: String| ListError {
        list: decl.name.clone(),
        decl_line: decl.line,
        message,
    };
    // Flexible: a record with too few or too many fields is reported with its line, as
    // every other problem, rather than ending the reading with the csv crate's message.
    let body = bytes
        .strip_prefix(b"\xef\xbb\xbf".as_slice())
        .unwrap_or(bytes);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(body);
    let header = reader
        .byte_headers()
        .map_err(|e| vec![fail(format!("{shown}: {e}"))])?
        .clone();
    if header.is_empty() || (header.len() == 1 && header[0].is_empty()) {
        return Err(vec![fail(format!(
            "{shown}:1: no header (expected a CSV with a header naming column {:?})",
            decl.key
        ))]);
    }
    // The header's own line: blank lines may come before it.
    let mut line_of = crate::csv_lines::Lines::new(body);
    let header_line = line_of
        .record(Some(&csv::Position::new()), reader.position().byte())
        .line;
    let find = |name: &str| header.iter().position(|h| h == name.as_bytes());
    let shown_header = || {
        header
            .iter()
            .map(|h| format!("{:?}", String::from_utf8_lossy(h)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut errors = Vec::new();
    let key_at = find(&decl.key);
    if key_at.is_none() {
        errors.push(fail(format!(
            "{shown}:{header_line}: no key column {:?} (found {})",
            decl.key,
            shown_header()
        )));
    }
    let mut value_at = None;
    if let Some(v) = &decl.value {
        match find(v) {
            Some(at) => value_at = Some((v, at)),
            None => errors.push(fail(format!(
                "{shown}:{header_line}: no value column {v:?} (found {})",
                shown_header()
            ))),
        }
    }
    let Some(key_at) = key_at.filter(|_| errors.is_empty()) else {
        return Err(errors);
    };
    // Sized for a key per line: a million keys grew the table twenty times over. At most a
    // million ahead (36 MB): a file of blank lines is no list of keys.
    let lines = memchr::memchr_iter(b'\n', body).count().min(1 << 20);
    let mut entries =
        Entries::with_capacity_and_hasher(lines, crate::windows::keys::random_seeds());
    // Where each key was first seen, to report a duplicate with both lines.
    let mut first_line: HashMap<Box<str>, u64, ahash::RandomState> =
        HashMap::with_hasher(crate::windows::keys::random_seeds());
    // Duplicates of keys whose first line was not kept: (index in `errors`, key).
    let mut unplaced: Vec<(usize, Box<str>)> = Vec::new();
    let mut record = csv::ByteRecord::new();
    const MAX_REPORTED: usize = 20;
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                errors.push(fail(format!("{shown}: {e}")));
                break;
            }
        }
        let start = line_of.record(record.position(), reader.position().byte());
        let line = start.line;
        // One key holding every line after it would lose the list's other keys.
        if start.leaves_a_quote_open() {
            errors.push(fail(format!(
                "{shown}:{line}: quote opened here is never closed"
            )));
            break;
        }
        // A line the csv crate reads as one empty field is blank, unless it is `""`: a
        // quoted empty key, said as the empty key it is rather than skipped.
        if record.len() == 1
            && record.get(0).is_some_and(<[u8]>::is_empty)
            && !start.raw.contains(&b'"')
        {
            continue;
        }
        if record.len() != header.len() {
            if errors.len() < MAX_REPORTED {
                errors.push(fail(format!(
                    "{shown}:{line}: expected {} fields, found {}",
                    header.len(),
                    record.len()
                )));
            }
            continue;
        }
        let Some(key) = record.get(key_at) else {
            continue;
        };
        let Ok(key) = std::str::from_utf8(key) else {
            errors.push(fail(format!(
                "{shown}:{line}: column {:?}: {:?} is not valid UTF-8",
                decl.key,
                String::from_utf8_lossy(key)
            )));
            continue;
        };
        if key.is_empty() {
            // In a list, "" would match every empty value of the column looked up (a
            // `string` column gives "" for an empty field): a row left without its key is
            // a mistake, as an empty key is a bad row to a window.
            if errors.len() < MAX_REPORTED {
                errors.push(fail(format!(
                    "{shown}:{line}: column {:?}: \"\" is an empty key",
                    decl.key
                )));
            }
            continue;
        }
        let value = match value_at {
            None => Dynamic::TRUE,
            Some((name, at)) => {
                let field = record.get(at).unwrap_or_default();
                match decl.kind.value(field) {
                    Ok(v) if decl.kind == ColumnType::String => {
                        Dynamic::from(ImmutableString::from(v.into_string().unwrap_or_default()))
                    }
                    Ok(v) => v,
                    Err(why) => {
                        if errors.len() < MAX_REPORTED {
                            errors.push(fail(format!(
                                "{shown}:{line}: column {name:?}: {:?} {why}",
                                String::from_utf8_lossy(field)
                            )));
                        }
                        continue;
                    }
                }
            }
        };
        // Inserted first and found a duplicate after: one lookup per key. A duplicate
        // fails the list, so which of its values the table keeps does not matter.
        if entries.insert(key.into(), value).is_some() {
            if errors.len() < MAX_REPORTED {
                let mut message = format!(
                    "{shown}:{line}: column {:?}: duplicate key {key:?}",
                    decl.key
                );
                match first_line.get(key) {
                    Some(first) => message.push_str(&format!(" (first on line {first})")),
                    // Past the first keys: found by a second reading, once the file is read.
                    None => unplaced.push((errors.len(), key.into())),
                }
                errors.push(fail(message));
            }
            continue;
        }
        if first_line.len() < 1 << 16 {
            // Lines of the first keys only: enough to point at a duplicate in a list a
            // person wrote, without doubling the memory of a million-key list.
            first_line.insert(key.into(), line);
        }
    }
    if !unplaced.is_empty() {
        let value_at = value_at.map(|(_, at)| at);
        let found = first_lines(body, key_at, value_at, decl.kind, &unplaced);
        for ((at, _), first) in unplaced.iter().zip(found) {
            if first > 0 {
                errors[*at]
                    .message
                    .push_str(&format!(" (first on line {first})"));
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(List {
        name: decl.name.clone(),
        entries,
        is_map: decl.value.is_some(),
    })
}

/// The line where each of `keys` (duplicates) was first taken into the list, reading the
/// list's `body` again as `parse` reads it: a record of the header's width, its key at
/// `key_at`, and a value of type `kind` at `value_at` (a map). `parse` keeps the first
/// lines of a list's first 65,536 keys only, so a duplicate of a later key said "first on
/// line 0".
fn first_lines(
    body: &[u8],
    key_at: usize,
    value_at: Option<usize>,
    kind: ColumnType,
    keys: &[(usize, Box<str>)],
) -> Vec<u64> {
    let mut lines = vec![0; keys.len()];
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(body);
    let width = reader.byte_headers().map_or(0, csv::ByteRecord::len);
    let mut record = csv::ByteRecord::new();
    // Lines counted as `parse` counts them: the csv crate's own are not the user's.
    let mut line_of = crate::csv_lines::Lines::new(body);
    while lines.contains(&0) && matches!(reader.read_byte_record(&mut record), Ok(true)) {
        let this_line = line_of
            .record(record.position(), reader.position().byte())
            .line;
        if record.len() != width
            || value_at.is_some_and(|at| kind.value(record.get(at).unwrap_or_default()).is_err())
        {
            continue;
        }
        let key = record.get(key_at).unwrap_or_default();
        for (line, (_, wanted)) in lines.iter_mut().zip(keys) {
            if *line == 0 && wanted.as_bytes() == key {
                *line = this_line;
            }
        }
    }
    lines
}

/// The value rules see for a list: a shared, read-only handle.
#[derive(Debug, Clone)]
pub struct ListRef(pub Arc<List>);

impl ListRef {
    fn lookup(&mut self, key: &str) -> Dynamic {
        match self.0.get(key) {
            Some(v) => v.clone(),
            None => Dynamic::UNIT,
        }
    }
}

/// Registers the list type with `engine`: `list[key]` (the value, `true` in a set, `()`
/// when missing), `key in list`, `list.contains(key)`, `list.len()`. Keys may be strings
/// or ints (an int key is looked up as its decimal text), or `()` (never in a list).
pub fn register(engine: &mut Engine) {
    engine
        .register_type_with_name::<ListRef>("list")
        .register_indexer_get(|l: &mut ListRef, key: ImmutableString| l.lookup(&key))
        .register_indexer_get(|l: &mut ListRef, key: INT| l.lookup(&key.to_string()))
        .register_fn("contains", |l: &mut ListRef, key: ImmutableString| {
            l.0.get(&key).is_some()
        })
        .register_fn("contains", |l: &mut ListRef, key: INT| {
            l.0.get(&key.to_string()).is_some()
        })
        // An empty value of a nullable column is no key: missing, not an error, so that
        // `list[key] ?? default` holds for it too.
        .register_indexer_get(|_: &mut ListRef, _: ()| Dynamic::UNIT)
        .register_fn("contains", |_: &mut ListRef, _: ()| false)
        .register_fn("len", |l: &mut ListRef| l.0.len() as INT)
        .register_fn("to_string", |l: &mut ListRef| {
            format!(
                "{} {} ({} keys)",
                if l.0.is_map { "map" } else { "set" },
                l.0.name,
                l.0.len()
            )
        })
        .register_fn("to_debug", |l: &mut ListRef| {
            format!("list {} ({} keys)", l.0.name, l.0.len())
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decl(value: Option<&str>, kind: ColumnType) -> ListDecl {
        ListDecl {
            name: "risk".into(),
            file: "risk.csv".into(),
            key: "merchant".into(),
            value: value.map(str::to_string),
            kind,
            line: 3,
        }
    }

    /// A quote left open after blank lines is found (the csv crate's record position is
    /// where the blank lines begin), on the line where it opens; quotes that close, escaped
    /// or spanning lines, after a BOM and blank lines, are no error.
    #[test]
    fn a_quote_left_open_after_blank_lines_is_an_error() {
        // A quote left open after blank lines: the csv crate's record starts at them.
        let set = decl(None, ColumnType::String);
        for bytes in [
            &b"merchant\na\n\n\n\"b\nc\nd\n"[..],
            b"merchant\r\na\r\n\r\n\"b\r\nc\r\n",
        ] {
            let errors = parse(&set, "r.csv", bytes).unwrap_err();
            let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
            assert_eq!(
                shown,
                [format!(
                    "[lists.risk]: r.csv:{}: quote opened here is never closed",
                    if bytes.contains(&b'\r') { 4 } else { 5 }
                )]
            );
        }
        // Valid lists with quotes: escaped, spanning lines, after a BOM.
        for bytes in [
            &b"\xef\xbb\xbfmerchant\n\"a\"\"b\"\n\nc\n"[..],
            b"\xef\xbb\xbf\"merchant\"\r\n\r\n\"a\r\nb\"\r\nc\r\n",
        ] {
            assert_eq!(parse(&set, "r.csv", bytes).unwrap().len(), 2);
        }
    }

    #[test]
    fn a_map_is_typed_and_every_problem_is_located() {
        let d = decl(Some("risk"), ColumnType::Int);
        let list = parse(&d, "r.csv", b"merchant,risk\r\ncasino,90\r\n\"a,b\",10\r\n").unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list.get("a,b").unwrap().as_int(), Ok(10));
        let errors = parse(
            &d,
            "r.csv",
            b"merchant,risk\ncasino,90\nshop,high\ncasino,1\n",
        )
        .unwrap_err();
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "[lists.risk]: r.csv:3: column \"risk\": \"high\" is not an int",
                "[lists.risk]: r.csv:4: column \"merchant\": duplicate key \"casino\" (first on line 2)",
            ]
        );
        let errors = parse(&d, "r.csv", b"merchant,risk\n,5\nok,3\n\"\",6\n").unwrap_err();
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "[lists.risk]: r.csv:2: column \"merchant\": \"\" is an empty key",
                "[lists.risk]: r.csv:4: column \"merchant\": \"\" is an empty key",
            ]
        );
        // A one-column list's `""` line is a quoted empty key, not a blank line.
        let set = decl(None, ColumnType::String);
        for bytes in [
            &b"merchant\na\n\"\"\nb\n"[..],
            b"merchant\r\na\r\n\r\n\"\"\r\nb\r\n",
        ] {
            let errors = parse(&set, "r.csv", bytes).unwrap_err();
            let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
            let line = if bytes.contains(&b'\r') { 4 } else { 3 };
            assert_eq!(
                shown,
                [format!(
                    "[lists.risk]: r.csv:{line}: column \"merchant\": \"\" is an empty key"
                )]
            );
        }
        // Errors name each record's own line, after blank lines and with CRLF (the csv
        // crate's positions are where reading began: lines 2 and 5 here, once).
        for bytes in [
            &b"merchant,risk\r\nok,3\r\n\r\n\r\nbad\r\nx,notint\r\n"[..],
            b"merchant,risk\nok,3\n\n\nbad\nx,notint\n",
            b"merchant,risk\rok,3\r\r\rbad\rx,notint\r",
        ] {
            let errors = parse(&d, "r.csv", bytes).unwrap_err();
            let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
            assert_eq!(
                shown,
                [
                    "[lists.risk]: r.csv:5: expected 2 fields, found 1",
                    "[lists.risk]: r.csv:6: column \"risk\": \"notint\" is not an int",
                ]
            );
        }
        // In a map, a `""` line is a row short of its value.
        let errors = parse(&d, "r.csv", b"merchant,risk\nok,3\n\"\"\n").unwrap_err();
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["[lists.risk]: r.csv:3: expected 2 fields, found 1"]);
        let errors = parse(&d, "r.csv", b"merchant,risk\nshop\nbar,1,2\nok,3\n").unwrap_err();
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "[lists.risk]: r.csv:2: expected 2 fields, found 1",
                "[lists.risk]: r.csv:3: expected 2 fields, found 3",
            ]
        );
        let errors = parse(&d, "r.csv", b"").unwrap_err();
        assert_eq!(
            errors[0].to_string(),
            "[lists.risk]: r.csv:1: no header (expected a CSV with a header naming column \"merchant\")"
        );
        let errors = parse(&d, "r.csv", b"name,score\nx,1\n").unwrap_err();
        assert_eq!(
            errors[0].to_string(),
            "[lists.risk]: r.csv:1: no key column \"merchant\" (found \"name\", \"score\")"
        );
        assert_eq!(
            errors[1].to_string(),
            "[lists.risk]: r.csv:1: no value column \"risk\" (found \"name\", \"score\")"
        );
        // Blank lines before the header: the header's own line (it said line 1).
        for bytes in [
            &b"\n\nname,score\nx,1\n"[..],
            b"\r\n\rname,score\rx,1\r",
            b"\xef\xbb\xbf\r\r\nname,score\r\n",
        ] {
            let errors = parse(&d, "r.csv", bytes).unwrap_err();
            let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
            assert_eq!(
                shown,
                [
                    "[lists.risk]: r.csv:3: no key column \"merchant\" (found \"name\", \"score\")",
                    "[lists.risk]: r.csv:3: no value column \"risk\" (found \"name\", \"score\")",
                ],
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn rules_index_lists_and_test_membership_without_copying_them() {
        let mut engine = Engine::new();
        register(&mut engine);
        let set = parse(
            &decl(None, ColumnType::String),
            "s.csv",
            b"merchant\ncasino\n42\n",
        )
        .unwrap();
        let map = parse(
            &decl(Some("risk"), ColumnType::Int),
            "m.csv",
            b"merchant,risk\ncasino,90\n",
        )
        .unwrap();
        let mut scope = rhai::Scope::new();
        scope.push_constant("s", ListRef(Arc::new(set)));
        scope.push_constant("m", ListRef(Arc::new(map)));
        let eval = |scope: &mut rhai::Scope, script: &str| {
            engine
                .eval_with_scope::<Dynamic>(scope, script)
                .unwrap()
                .to_string()
        };
        assert_eq!(
            eval(&mut scope, "\"casino\" in s && 42 in s && !(\"shop\" in s)"),
            "true"
        );
        assert_eq!(eval(&mut scope, "(m[\"shop\"] ?? 0) + m[\"casino\"]"), "90");
        assert_eq!(eval(&mut scope, "m.len() + s.len()"), "3");
        // The empty value of a nullable column is in no list.
        assert_eq!(
            eval(&mut scope, "(m[()] ?? 7) + if () in s { 1 } else { 0 }"),
            "7"
        );
    }

    /// The load-time figure of the README: `cargo test --release --lib
    /// a_million_key_list -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn a_million_key_list_loads_in_under_a_second() {
        let mut csv = b"merchant,risk\n".to_vec();
        for i in 0..1_000_000 {
            csv.extend_from_slice(format!("merchant-{i:07},{}\n", i % 100).as_bytes());
        }
        let started = std::time::Instant::now();
        let list = parse(&decl(Some("risk"), ColumnType::Int), "m.csv", &csv).unwrap();
        let took = started.elapsed();
        assert_eq!(list.len(), 1_000_000);
        println!(
            "1,000,000-key map list ({} bytes) loaded in {took:?}",
            csv.len()
        );
        assert!(took < std::time::Duration::from_secs(1), "{took:?}");
    }
}
