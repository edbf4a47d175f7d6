//! `cargo xtask fetch-data wordnet`: a multi-task benchmark of real text, the glosses
//! (definitions) of WordNet 3.0 as Debian ships them, labelled with their lexicographer file
//! (the supersense: `noun.animal`, `noun.artifact`, `verb.motion`, ...).
//!
//! What it does, every step deterministic:
//!
//! 1. `apt-get download wordnet-base=1:3.0-37` (pinned; apt checks the package against the
//!    signed archive index, this checks its SHA-256 too) into `<cache>/debs/`, once;
//! 2. `dpkg-deb -x` into a temporary folder, keeping `data.{noun,verb,adj,adv}` in
//!    `<cache>/data/wordnet-base_3.0-37/`, once;
//! 3. parses every synset line (its byte offset must be its first field, as WordNet promises),
//!    keeps its definition (the gloss before the first quoted example), drops definitions
//!    shorter than [`MIN_WORDS`] or longer than [`MAX_WORDS`] words and every definition that
//!    two synsets share;
//! 4. puts every synset into one split by a hash of its part of speech and offset (not a
//!    random draw): the same synset, hence the same gloss, is in the same split in every
//!    task, so nothing evaluated was trained on by any task;
//! 5. fills each task of [`TASKS`] with the same number of synsets per label and split, in
//!    hash order. A training synset goes to at most one task (the first in [`TASKS`] order
//!    that asks for its category); validation and test synsets may serve several tasks (they
//!    are never trained on);
//! 6. writes `configs/wordnet/data/<task>/{train,dev,test}.tsv` (columns `synset`, `gloss`,
//!    `label`) and `SOURCE.txt` (package, SHA-256, rules, per-task sizes, a fingerprint of the
//!    files), replacing the folder atomically and leaving it untouched when nothing changed.
//!
//! The registry `configs/wordnet/tasks.toml` is generated from [`TASKS`] too
//! ([`registry_toml`]; `--write-registry` rewrites it, a test checks the committed copy).
//! docs/realtext.md explains the task design.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::project;
use crate::pypi::remove_leftovers;
use crate::Result;

/// The Debian package the text comes from.
const PACKAGE: &str = "wordnet-base";
/// Its pinned version (Debian bookworm).
const VERSION: &str = "1:3.0-37";
/// The name the cached package gets.
const DEB_NAME: &str = "wordnet-base_3.0-37_all.deb";
/// SHA-256 of that package.
const DEB_SHA256: &str = "61060d960f9ada8fa120872312eccd3ecebfbab8c4579e4f5a74e1cf67620752";
/// Where the data files sit inside the package.
const DICT_IN_DEB: &str = "usr/share/wordnet";
/// Bumped whenever the rules change what is written (it is part of `SOURCE.txt`).
const RULES: u32 = 1;
/// Definitions with fewer words are dropped (most are bare cross-references: "breath").
pub const MIN_WORDS: usize = 3;
/// Definitions with more words are dropped: 14 words are at most about 22 MiniLM word
/// pieces for nine in ten definitions, so `data.seq_len = 24` truncates few.
pub const MAX_WORDS: usize = 14;
/// Hash buckets (of 100) of the training split: `[0, 60)`.
const TRAIN_BUCKETS: u64 = 60;
/// Hash buckets of the validation split: `[60, 72)`; the test split is `[72, 100)`.
const DEV_BUCKETS: u64 = 12;
/// Salt of the hash that orders synsets within a split (independent of the split hash).
const ORDER_SALT: u64 = 0x005e_ed0f_0a11_7a5c;
/// The split names of the files, in [`Split`] order.
const SPLIT_FILES: [&str; 3] = ["train", "dev", "test"];

/// A part of speech: one WordNet data file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Pos {
    Noun,
    Verb,
    Adj,
    Adv,
}

impl Pos {
    const ALL: [Pos; 4] = [Pos::Noun, Pos::Verb, Pos::Adj, Pos::Adv];

    fn file(self) -> &'static str {
        match self {
            Pos::Noun => "data.noun",
            Pos::Verb => "data.verb",
            Pos::Adj => "data.adj",
            Pos::Adv => "data.adv",
        }
    }

    /// The letter of synset ids (`n01234567`, as ImageNet writes WordNet ids).
    fn letter(self) -> char {
        match self {
            Pos::Noun => 'n',
            Pos::Verb => 'v',
            Pos::Adj => 'a',
            Pos::Adv => 'r',
        }
    }
}

/// One label of a task: the synsets of one lexicographer file of one part of speech.
#[derive(Clone, Copy, Debug)]
struct Class {
    /// The label name in the files and the registry.
    label: &'static str,
    pos: Pos,
    /// The lexicographer file number (`lexnames(5WN)`): 5 = `noun.animal`, ...
    lexfile: u8,
    /// The lexicographer file's name, for the docs and comments.
    lexname: &'static str,
}

const fn class(label: &'static str, pos: Pos, lexfile: u8, lexname: &'static str) -> Class {
    Class {
        label,
        pos,
        lexfile,
        lexname,
    }
}

const ANIMAL: Class = class("animal", Pos::Noun, 5, "noun.animal");
const PLANT: Class = class("plant", Pos::Noun, 20, "noun.plant");
const PERSON: Class = class("person", Pos::Noun, 18, "noun.person");
const BODY: Class = class("body", Pos::Noun, 8, "noun.body");
const ARTIFACT: Class = class("artifact", Pos::Noun, 6, "noun.artifact");
const SUBSTANCE: Class = class("substance", Pos::Noun, 27, "noun.substance");
const FOOD: Class = class("food", Pos::Noun, 13, "noun.food");
const OBJECT: Class = class("object", Pos::Noun, 17, "noun.object");
const ACT: Class = class("act", Pos::Noun, 4, "noun.act");
const COMMUNICATION: Class = class("communication", Pos::Noun, 10, "noun.communication");
const COGNITION: Class = class("cognition", Pos::Noun, 9, "noun.cognition");
const STATE: Class = class("state", Pos::Noun, 26, "noun.state");
const V_CHANGE: Class = class("change", Pos::Verb, 30, "verb.change");
const V_CONTACT: Class = class("contact", Pos::Verb, 35, "verb.contact");
const V_COMMUNICATION: Class = class("communication", Pos::Verb, 32, "verb.communication");
const V_MOTION: Class = class("motion", Pos::Verb, 38, "verb.motion");
const ADJECTIVE: Class = class("adjective", Pos::Adj, 0, "adj.all");
const RELATIONAL: Class = class("relational", Pos::Adj, 1, "adj.pert");
const ADVERB: Class = class("adverb", Pos::Adv, 2, "adv.all");

/// What a task is for in the experiments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// A related high-resource task of the training mixture.
    High,
    /// A related task with few training examples (the experiments cut it further).
    Low,
    /// A held-out task (`held_out = true`): never in a training mixture; its small training
    /// split is the k-shot pool.
    HeldOut,
    /// Different text (another part of speech) and labels of another kind: the tasks added
    /// in the robustness experiment.
    Unrelated,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::High => "high-resource",
            Role::Low => "low-resource",
            Role::HeldOut => "held-out",
            Role::Unrelated => "unrelated",
        }
    }
}

/// One task of the benchmark.
#[derive(Clone, Copy, Debug)]
struct TaskDef {
    name: &'static str,
    family: &'static str,
    role: Role,
    /// The labels, in label-index order.
    classes: &'static [Class],
    /// Examples per label in the train, dev and test splits.
    per_class: [usize; 3],
}

/// Examples per label of the high-resource noun tasks: 3,000 / 300 / 750 per task.
const HIGH: [usize; 3] = [1000, 100, 250];
/// Examples per label of the low-resource and held-out noun tasks: 300 / 300 / 750.
const FEW: [usize; 3] = [100, 100, 250];

/// The tasks, in registry (task id) order. Each noun family draws on four supersenses
/// A, B, C, D: the high-resource task is [A, B, C], the low-resource one [A, D, C] and the
/// held-out one [A, B, D], so every pair of a family shares two labels, the held-out task
/// shares its first two label positions with the high-resource one (whose head it can start
/// from), and the D category is learned only from the low-resource task. Families share no
/// label; the unrelated tasks are verb and adjective / adverb glosses.
const TASKS: &[TaskDef] = &[
    TaskDef {
        name: "living_hi",
        family: "living",
        role: Role::High,
        classes: &[ANIMAL, PLANT, PERSON],
        per_class: HIGH,
    },
    TaskDef {
        name: "physical_hi",
        family: "physical",
        role: Role::High,
        classes: &[ARTIFACT, SUBSTANCE, FOOD],
        per_class: HIGH,
    },
    TaskDef {
        name: "abstract_hi",
        family: "abstract",
        role: Role::High,
        classes: &[ACT, COMMUNICATION, COGNITION],
        per_class: HIGH,
    },
    TaskDef {
        name: "living_lo",
        family: "living",
        role: Role::Low,
        classes: &[ANIMAL, BODY, PERSON],
        per_class: FEW,
    },
    TaskDef {
        name: "physical_lo",
        family: "physical",
        role: Role::Low,
        classes: &[ARTIFACT, OBJECT, FOOD],
        per_class: FEW,
    },
    TaskDef {
        name: "abstract_lo",
        family: "abstract",
        role: Role::Low,
        classes: &[ACT, STATE, COGNITION],
        per_class: FEW,
    },
    TaskDef {
        name: "living_new",
        family: "living",
        role: Role::HeldOut,
        classes: &[ANIMAL, PLANT, BODY],
        per_class: FEW,
    },
    TaskDef {
        name: "physical_new",
        family: "physical",
        role: Role::HeldOut,
        classes: &[ARTIFACT, SUBSTANCE, OBJECT],
        per_class: FEW,
    },
    TaskDef {
        name: "abstract_new",
        family: "abstract",
        role: Role::HeldOut,
        classes: &[ACT, COMMUNICATION, STATE],
        per_class: FEW,
    },
    TaskDef {
        name: "verb_sense",
        family: "verb",
        role: Role::Unrelated,
        classes: &[V_CHANGE, V_CONTACT, V_COMMUNICATION, V_MOTION],
        per_class: [600, 100, 250],
    },
    TaskDef {
        name: "word_class",
        family: "word_class",
        role: Role::Unrelated,
        classes: &[ADJECTIVE, RELATIONAL, ADVERB],
        per_class: [800, 100, 250],
    },
];

/// `cargo xtask fetch-data wordnet [--write-registry]`: provisions the benchmark and prints its
/// data folder.
pub fn fetch(args: &[String]) -> Result<()> {
    let usage = "usage: cargo xtask fetch-data wordnet [--write-registry]";
    let (name, rest) = args.split_first().ok_or(usage)?;
    if name != "wordnet" {
        return Err(format!("unknown data set `{name}`: the one known is wordnet\n{usage}").into());
    }
    let write_registry = match rest {
        [] => false,
        [flag] if flag == "--write-registry" => true,
        _ => return Err(usage.into()),
    };
    let registry = registry_path();
    if write_registry {
        fs::write(&registry, registry_toml())
            .map_err(|e| format!("cannot write {}: {e}", registry.display()))?;
        eprintln!("wrote {}", registry.display());
    } else if fs::read_to_string(&registry).ok().as_deref() != Some(registry_toml().as_str()) {
        eprintln!(
            "warning: {} differs from the task table in xtask/src/wordnet.rs; \
             `cargo xtask fetch-data wordnet --write-registry` rewrites it",
            registry.display()
        );
    }
    let (dir, summary) = ensure()?;
    eprint!("{summary}");
    println!("{}", dir.display());
    Ok(())
}

/// The committed registry of the benchmark.
pub fn registry_path() -> PathBuf {
    project::root().join("configs/wordnet/tasks.toml")
}

/// The folder the task files are written to (git-ignored; the registry's paths point there).
pub fn data_dir() -> PathBuf {
    project::root().join("configs/wordnet/data")
}

/// Downloads and unpacks the package when needed and (re)writes the task files when they
/// differ from what the rules give; returns the data folder and a summary table.
pub fn ensure() -> Result<(PathBuf, String)> {
    let dict = ensure_dict()?;
    let files = extract(&dict)?;
    let out = data_dir();
    let summary = files[SOURCE_FILE].clone();
    if !write_if_changed(&out, &files)? {
        eprintln!("{} is up to date", out.display());
    } else {
        eprintln!("wrote {}", out.display());
    }
    Ok((out, summary))
}

/// Whether `apt-get` and `dpkg-deb` are on the `PATH` (a Debian-like machine).
pub fn tools_available() -> bool {
    ["apt-get", "dpkg-deb"].iter().all(|tool| {
        Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// The folder of the unpacked data files, `<cache>/data/wordnet-base_3.0-37/`, made once.
pub fn ensure_dict() -> Result<PathBuf> {
    let cache = project::cache_dir()?;
    let data = cache.join("data");
    let dict = data.join(DEB_NAME.trim_end_matches("_all.deb"));
    let stamp = dict.join(STAMP_FILE);
    if fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == DEB_SHA256) {
        return Ok(dict);
    }
    let deb = ensure_deb(&cache.join("debs"))?;
    fs::create_dir_all(&data).map_err(|e| format!("cannot create {}: {e}", data.display()))?;
    let tmp_prefix = ".tmp-wordnet-";
    remove_leftovers(&data, &[tmp_prefix]);
    let tmp = data.join(format!("{tmp_prefix}{}", std::process::id()));
    let unpacked = tmp.join("deb");
    fs::create_dir_all(&unpacked).map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
    let mut cmd = Command::new("dpkg-deb");
    cmd.arg("-x").arg(&deb).arg(&unpacked);
    quiet(&mut cmd, &format!("unpacking {}", deb.display()))?;
    let fresh = tmp.join("dict");
    fs::create_dir_all(&fresh).map_err(|e| format!("cannot create {}: {e}", fresh.display()))?;
    for pos in Pos::ALL {
        let from = unpacked.join(DICT_IN_DEB).join(pos.file());
        fs::rename(&from, fresh.join(pos.file()))
            .map_err(|e| format!("{} lacks {}: {e}", deb.display(), from.display()))?;
    }
    fs::write(fresh.join(STAMP_FILE), DEB_SHA256)
        .map_err(|e| format!("cannot write the stamp in {}: {e}", fresh.display()))?;
    if dict.exists() {
        fs::remove_dir_all(&dict).map_err(|e| format!("cannot replace {}: {e}", dict.display()))?;
    }
    fs::rename(&fresh, &dict)
        .map_err(|e| format!("cannot move {} into place: {e}", fresh.display()))?;
    let _ = fs::remove_dir_all(&tmp);
    Ok(dict)
}

const STAMP_FILE: &str = "taskmoe-data.stamp";
const SOURCE_FILE: &str = "SOURCE.txt";

/// The package in `debs`, downloaded with apt when missing; its SHA-256 is checked.
fn ensure_deb(debs: &Path) -> Result<PathBuf> {
    let deb = debs.join(DEB_NAME);
    if deb.exists() {
        check_sha256(&deb)?;
        return Ok(deb);
    }
    fs::create_dir_all(debs).map_err(|e| format!("cannot create {}: {e}", debs.display()))?;
    remove_leftovers(debs, &[".partial-"]);
    let partial = debs.join(format!(".partial-{}", std::process::id()));
    fs::create_dir_all(&partial)
        .map_err(|e| format!("cannot create {}: {e}", partial.display()))?;
    eprintln!(
        "downloading {PACKAGE} {VERSION} (Debian, about 6.5 MB) into {}",
        debs.display()
    );
    let mut cmd = Command::new("apt-get");
    cmd.args(["download", "-q", &format!("{PACKAGE}={VERSION}")])
        .current_dir(&partial);
    quiet(&mut cmd, &format!("downloading {PACKAGE} {VERSION}")).map_err(|e| {
        format!(
            "{e}\n(the benchmark is pinned to Debian bookworm's {PACKAGE} {VERSION}; without \
             apt access, put that package at {})",
            deb.display()
        )
    })?;
    let got: Vec<PathBuf> = fs::read_dir(&partial)
        .map_err(|e| format!("cannot list {}: {e}", partial.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .collect();
    let [file] = got.as_slice() else {
        return Err(format!(
            "apt-get download left {} .deb files in {}",
            got.len(),
            partial.display()
        )
        .into());
    };
    check_sha256(file)?;
    fs::rename(file, &deb)
        .map_err(|e| format!("cannot move {} into place: {e}", file.display()))?;
    let _ = fs::remove_dir_all(&partial);
    Ok(deb)
}

fn check_sha256(deb: &Path) -> Result<()> {
    let out = Command::new("sha256sum")
        .arg(deb)
        .output()
        .map_err(|e| format!("cannot run sha256sum: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let sum = text.split_whitespace().next().unwrap_or("");
    if !out.status.success() || sum != DEB_SHA256 {
        return Err(format!(
            "{} has SHA-256 {sum:?}, expected {DEB_SHA256} ({PACKAGE} {VERSION}); delete it to \
             download it again",
            deb.display()
        )
        .into());
    }
    Ok(())
}

/// Runs a helper, showing its error lines (`E: ...` for apt) only when it fails.
fn quiet(cmd: &mut Command, what: &str) -> Result<()> {
    let out = cmd
        .output()
        .map_err(|e| format!("{what}: cannot start `{}`: {e}", project::describe(cmd)))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("E:")).collect();
    let reason = if errors.is_empty() {
        stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no message")
            .to_string()
    } else {
        errors.join("; ")
    };
    Err(format!("failed {what} ({}): {reason}", out.status).into())
}

/// One synset line of a data file.
#[derive(Clone, Debug, PartialEq)]
struct Synset {
    pos: Pos,
    offset: u32,
    lexfile: u8,
    /// The gloss up to its first quoted example, whitespace collapsed.
    definition: String,
}

impl Synset {
    /// The synset's hash key: part of speech and offset.
    fn key(&self) -> u64 {
        ((self.pos as u64) << 32) | u64::from(self.offset)
    }

    /// `n01234567`.
    fn id(&self) -> String {
        format!("{}{:08}", self.pos.letter(), self.offset)
    }

    /// 0 = train, 1 = dev, 2 = test, by the hash of [`Synset::key`].
    fn split(&self) -> usize {
        match splitmix64(self.key()) % 100 {
            b if b < TRAIN_BUCKETS => 0,
            b if b < TRAIN_BUCKETS + DEV_BUCKETS => 1,
            _ => 2,
        }
    }

    /// The order of synsets within a split.
    fn order(&self) -> (u64, u64) {
        (splitmix64(self.key() ^ ORDER_SALT), self.key())
    }
}

/// SplitMix64's output function: a fixed, well-mixed 64-bit hash.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// FNV-1a, 64 bits: the fingerprint of the written files.
fn fnv1a(hash: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(hash, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// The definition part of a gloss: up to the first `"` (examples are quoted), trailing `;`
/// and blanks removed, runs of whitespace made one space.
fn definition_of(gloss: &str) -> String {
    let head = gloss.split('"').next().unwrap_or("");
    let words: Vec<&str> = head.split_whitespace().collect();
    let mut text = words.join(" ");
    while text.ends_with(';') || text.ends_with(' ') {
        text.pop();
    }
    text
}

/// Parses a WordNet 3.0 data file (`wndb(5WN)`): license lines start with two spaces; every
/// other line is `offset lex_filenum ss_type w_cnt word lex_id ... | gloss`, and its offset is
/// its byte position in the file. Errors name the file and line.
fn parse_data(text: &str, pos: Pos, origin: &str) -> Result<Vec<Synset>> {
    let mut out = Vec::new();
    let mut at = 0usize;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let start = at;
        at += line.len();
        let line = line.trim_end_matches('\n');
        if line.starts_with("  ") || line.is_empty() {
            continue;
        }
        let bad = |what: String| format!("{origin}:{}: {what}", i + 1);
        let mut fields = line.split(' ');
        let offset: u32 = fields
            .next()
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| bad("the line does not start with a synset offset".into()))?;
        if offset as usize != start {
            return Err(bad(format!(
                "synset offset {offset:08} but the line starts at byte {start}"
            ))
            .into());
        }
        let lexfile: u8 = fields
            .next()
            .and_then(|f| f.parse().ok())
            .filter(|&n| n <= 44)
            .ok_or_else(|| bad("no lexicographer file number (0-44) after the offset".into()))?;
        let (_, gloss) = line
            .split_once(" | ")
            .ok_or_else(|| bad("no gloss (` | `)".into()))?;
        out.push(Synset {
            pos,
            offset,
            lexfile,
            definition: definition_of(gloss),
        });
    }
    if out.is_empty() {
        return Err(format!("{origin}: no synsets").into());
    }
    Ok(out)
}

/// Reads the four data files of `dict`.
fn read_dict(dict: &Path) -> Result<Vec<Synset>> {
    let mut all = Vec::new();
    for pos in Pos::ALL {
        let path = dict.join(pos.file());
        let bytes = fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let text =
            String::from_utf8(bytes).map_err(|e| format!("{}: not UTF-8 ({e})", path.display()))?;
        all.extend(parse_data(&text, pos, &path.display().to_string())?);
    }
    Ok(all)
}

/// Every file of the data folder (path relative to it, content) from the data files in
/// `dict`.
fn extract(dict: &Path) -> Result<BTreeMap<String, String>> {
    build(&read_dict(dict)?)
}

/// The task files and `SOURCE.txt` from parsed synsets.
fn build(synsets: &[Synset]) -> Result<BTreeMap<String, String>> {
    // Definitions two synsets share would put one text in two splits or under two labels.
    let mut uses: HashMap<String, usize> = HashMap::new();
    for s in synsets {
        *uses.entry(s.definition.to_lowercase()).or_default() += 1;
    }
    let usable = |s: &&Synset| {
        let words = s.definition.split(' ').count();
        (MIN_WORDS..=MAX_WORDS).contains(&words) && uses[&s.definition.to_lowercase()] == 1
    };
    // pools[(pos, lexfile)][split]: the usable synsets, in hash order.
    let mut pools: HashMap<(Pos, u8), [Vec<&Synset>; 3]> = HashMap::new();
    let mut usable_count = 0usize;
    for s in synsets.iter().filter(usable) {
        pools.entry((s.pos, s.lexfile)).or_default()[s.split()].push(s);
        usable_count += 1;
    }
    for splits in pools.values_mut() {
        for pool in splits.iter_mut() {
            pool.sort_by_key(|s| s.order());
        }
    }

    let mut files = BTreeMap::new();
    let mut used_for_training: HashSet<u64> = HashSet::new();
    let mut fingerprint = FNV_OFFSET;
    let mut table = String::new();
    for task in TASKS {
        let mut sizes = [0usize; 3];
        for (split, file) in SPLIT_FILES.iter().enumerate() {
            let quota = task.per_class[split];
            let mut rows: Vec<(&Synset, &str)> = Vec::new();
            for c in task.classes {
                let empty: [Vec<&Synset>; 3] = Default::default();
                let pool = &pools.get(&(c.pos, c.lexfile)).unwrap_or(&empty)[split];
                let picked: Vec<&Synset> = pool
                    .iter()
                    .filter(|s| split != 0 || !used_for_training.contains(&s.key()))
                    .take(quota)
                    .copied()
                    .collect();
                if picked.len() < quota {
                    return Err(format!(
                        "task `{}`: label `{}` ({}) has {} usable synsets left in the {file} \
                         split, {quota} wanted",
                        task.name,
                        c.label,
                        c.lexname,
                        picked.len()
                    )
                    .into());
                }
                if split == 0 {
                    used_for_training.extend(picked.iter().map(|s| s.key()));
                }
                rows.extend(picked.into_iter().map(|s| (s, c.label)));
            }
            rows.sort_by_key(|(s, _)| s.order());
            let mut text = String::from("synset\tgloss\tlabel\n");
            for (s, label) in &rows {
                let _ = writeln!(text, "{}\t{}\t{label}", s.id(), s.definition);
            }
            let path = format!("{}/{file}.tsv", task.name);
            fingerprint = fnv1a(fnv1a(fingerprint, path.as_bytes()), text.as_bytes());
            sizes[split] = rows.len();
            files.insert(path, text);
        }
        let labels: Vec<&str> = task.classes.iter().map(|c| c.label).collect();
        let _ = writeln!(
            table,
            "{:<13} {:<11} {:<14} {:>5} {:>4} {:>5}  {:.3}  {}",
            task.name,
            task.family,
            task.role.name(),
            sizes[0],
            sizes[1],
            sizes[2],
            1.0 / labels.len() as f64,
            labels.join(" / ")
        );
    }
    let source = format!(
        "WordNet 3.0 definitions from Debian bookworm's {PACKAGE} {VERSION} ({DEB_NAME}, SHA-256 \
         {DEB_SHA256}),\nwritten by `cargo xtask fetch-data wordnet` (xtask/src/wordnet.rs, rules \
         v{RULES}: {MIN_WORDS}-{MAX_WORDS} words, no shared definitions, split by synset hash \
         {TRAIN_BUCKETS}/{DEV_BUCKETS}/{}).\nWordNet is (c) Princeton University, under the \
         WordNet 3.0 license (see the package's copyright file).\n{} synsets read, {usable_count} \
         with a definition of their own of {MIN_WORDS}-{MAX_WORDS} words.\nfingerprint \
         {fingerprint:016x}\n\n\
         {:<13} {:<11} {:<14} {:>5} {:>4} {:>5}  {}  labels\n{table}",
        100 - TRAIN_BUCKETS - DEV_BUCKETS,
        synsets.len(),
        "task",
        "family",
        "role",
        "train",
        "dev",
        "test",
        "majority"
    );
    files.insert(SOURCE_FILE.to_string(), source);
    Ok(files)
}

/// Writes `files` as the folder `out` (atomically: a temporary sibling renamed into place),
/// unless `out` already holds exactly them. Returns whether it wrote.
fn write_if_changed(out: &Path, files: &BTreeMap<String, String>) -> Result<bool> {
    if holds_exactly(out, files) {
        return Ok(false);
    }
    let parent = out.parent().ok_or("the data folder has no parent")?;
    fs::create_dir_all(parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    let prefix = ".data.tmp-";
    remove_leftovers(parent, &[prefix]);
    let tmp = parent.join(format!("{prefix}{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    for (rel, text) in files {
        let path = tmp.join(rel);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    if out.exists() {
        let old = parent.join(format!("{prefix}{}-old", std::process::id()));
        fs::rename(out, &old).map_err(|e| format!("cannot move {} aside: {e}", out.display()))?;
        let _ = fs::remove_dir_all(&old);
    }
    fs::rename(&tmp, out).map_err(|e| format!("cannot move {} into place: {e}", tmp.display()))?;
    Ok(true)
}

/// Whether the folder `dir` holds `files` and nothing else.
fn holds_exactly(dir: &Path, files: &BTreeMap<String, String>) -> bool {
    fn list(dir: &Path, prefix: &str, out: &mut Vec<String>) -> std::io::Result<()> {
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
            if entry.file_type()?.is_dir() {
                list(&entry.path(), &format!("{name}/"), out)?;
            } else {
                out.push(name);
            }
        }
        Ok(())
    }
    let mut found = Vec::new();
    if list(dir, "", &mut found).is_err() {
        return false;
    }
    found.sort();
    found.iter().eq(files.keys())
        && files
            .iter()
            .all(|(rel, text)| fs::read_to_string(dir.join(rel)).is_ok_and(|t| &t == text))
}

/// The registry TOML of the benchmark (committed as `configs/wordnet/tasks.toml`).
pub fn registry_toml() -> String {
    let mut t = String::from(
        "# The WordNet gloss benchmark: real text (WordNet 3.0 definitions, Debian's wordnet-base\n\
         # 1:3.0-37), labelled with their supersense. GENERATED from the task table in\n\
         # xtask/src/wordnet.rs (`cargo xtask fetch-data wordnet --write-registry`); a test checks\n\
         # this copy. The split files are written by `cargo xtask fetch-data wordnet` into data/\n\
         # (git-ignored): run it once per checkout. docs/realtext.md describes the tasks.\n\
         #\n\
         # Every label of a task has the same number of examples in every split (majority\n\
         # baseline 1/labels). A synset (and its definition) is in one split for every task; a\n\
         # training synset is in one task only.\n",
    );
    for task in TASKS {
        let classes: Vec<String> = task
            .classes
            .iter()
            .map(|c| format!("{} = {}", c.label, c.lexname))
            .collect();
        let n = task.classes.len();
        let _ = write!(
            t,
            "\n# {}: {}; train / dev / test {} / {} / {}.\n[[tasks]]\nname = \"{}\"\n\
             family = \"{}\"\nkind = \"classification\"\nlabels = [{}]\n\
             text_fields = [\"gloss\"]\nid_field = \"synset\"\nmetrics = [\"accuracy\"]\n",
            task.role.name(),
            classes.join(", "),
            task.per_class[0] * n,
            task.per_class[1] * n,
            task.per_class[2] * n,
            task.name,
            task.family,
            task.classes
                .iter()
                .map(|c| format!("\"{}\"", c.label))
                .collect::<Vec<_>>()
                .join(", "),
        );
        if task.role == Role::HeldOut {
            t.push_str("held_out = true\n");
        }
        let _ = write!(
            t,
            "[tasks.splits]\ntrain = \"data/{0}/train.tsv\"\nvalidation = \"data/{0}/dev.tsv\"\n\
             test = \"data/{0}/test.tsv\"\n",
            task.name
        );
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fingerprint of the files the rules write from wordnet-base 1:3.0-37 (in
    /// `SOURCE.txt`). A change of the rules changes it: bump [`RULES`] and update it.
    const FINGERPRINT: &str = "fingerprint 17dfbbbbb3c65709";

    /// A data file in WordNet's layout, each offset its line's byte position.
    fn data_file(lines: &[(u8, &str)]) -> String {
        let mut text = String::from("  1 This software and database is being provided\n");
        for (lexfile, gloss) in lines {
            let at = text.len();
            let _ = writeln!(text, "{at:08} {lexfile:02} n 01 word 0 000 | {gloss}  ");
        }
        text
    }

    #[test]
    fn definitions_drop_examples_and_extra_space() {
        assert_eq!(
            definition_of("a domestic  animal; kept as a pet; \"the dog barked\"; \"x\"  "),
            "a domestic animal; kept as a pet"
        );
        assert_eq!(
            definition_of("(botany) a plant part"),
            "(botany) a plant part"
        );
        assert_eq!(definition_of("\"only an example\""), "");
    }

    #[test]
    fn parses_synset_lines_and_checks_offsets() {
        let text = data_file(&[(5, "an animal that barks"), (20, "a green plant; \"x\"")]);
        let synsets = parse_data(&text, Pos::Noun, "data.noun").unwrap();
        assert_eq!(synsets.len(), 2);
        assert_eq!(synsets[0].lexfile, 5);
        assert_eq!(synsets[1].definition, "a green plant");
        assert_eq!(synsets[0].id(), format!("n{:08}", synsets[0].offset));
        let broken = text.replacen("00000049", "00000048", 1);
        let err = parse_data(&broken, Pos::Noun, "data.noun")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("data.noun:2") && err.contains("byte 49"),
            "{err}"
        );
        let err = parse_data("00000000 05 n 01 dog 0 000\n", Pos::Noun, "f")
            .unwrap_err()
            .to_string();
        assert!(err.contains("f:1: no gloss"), "{err}");
    }

    #[test]
    fn the_hash_is_fixed() {
        // SplitMix64's first output for seed 0 and FNV-1a-64 of "a", as published: the split
        // of every synset hangs on these functions.
        assert_eq!(splitmix64(0), 0xe220_a839_7b1d_cdaf);
        assert_eq!(fnv1a(FNV_OFFSET, b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    /// Synthetic synsets: `n` per category of every task, with distinct definitions.
    fn synthetic(n: u32) -> Vec<Synset> {
        let mut cats: Vec<(Pos, u8)> = TASKS
            .iter()
            .flat_map(|t| t.classes.iter().map(|c| (c.pos, c.lexfile)))
            .collect();
        cats.sort();
        cats.dedup();
        let mut out = Vec::new();
        for (ci, (pos, lexfile)) in cats.into_iter().enumerate() {
            for i in 0..n {
                out.push(Synset {
                    pos,
                    offset: (ci as u32) * 100_000 + i,
                    lexfile,
                    definition: format!("definition {i} of category {ci}"),
                });
            }
        }
        out
    }

    fn parse_rows(text: &str) -> Vec<(String, String, String)> {
        text.lines()
            .skip(1)
            .map(|l| {
                let mut f = l.split('\t');
                let row = (
                    f.next().unwrap().to_string(),
                    f.next().unwrap().to_string(),
                    f.next().unwrap().to_string(),
                );
                assert!(f.next().is_none(), "{l}");
                row
            })
            .collect()
    }

    #[test]
    fn build_is_deterministic_balanced_and_disjoint() {
        let synsets = synthetic(6000);
        let a = build(&synsets).unwrap();
        let mut reversed = synsets.clone();
        reversed.reverse();
        assert_eq!(a, build(&reversed).unwrap(), "input order must not matter");
        let mut split_of: HashMap<String, usize> = HashMap::new();
        let mut trained: HashSet<String> = HashSet::new();
        for task in TASKS {
            for (split, file) in SPLIT_FILES.iter().enumerate() {
                let rows = parse_rows(&a[&format!("{}/{file}.tsv", task.name)]);
                assert_eq!(rows.len(), task.per_class[split] * task.classes.len());
                for c in task.classes {
                    let count = rows.iter().filter(|r| r.2 == c.label).count();
                    assert_eq!(count, task.per_class[split], "{} {file}", task.name);
                }
                for (id, _, _) in &rows {
                    assert_eq!(*split_of.entry(id.clone()).or_insert(split), split, "{id}");
                    if split == 0 {
                        assert!(trained.insert(id.clone()), "{id} trains two tasks");
                    }
                }
            }
        }
    }

    #[test]
    fn a_short_pool_is_an_error_naming_task_label_and_split() {
        let err = build(&synthetic(500)).unwrap_err().to_string();
        assert!(
            err.contains("task `living_hi`") && err.contains("label `animal`"),
            "{err}"
        );
        assert!(err.contains("train split"), "{err}");
    }

    #[test]
    fn the_committed_registry_is_the_generated_one() {
        let committed = fs::read_to_string(registry_path()).unwrap_or_default();
        assert!(
            committed == registry_toml(),
            "{} is stale: run `cargo xtask fetch-data wordnet --write-registry`",
            registry_path().display()
        );
    }

    /// On the real package (when `cargo xtask fetch-data wordnet` or `cargo xtask test` has
    /// unpacked it): two extractions are identical and give the pinned fingerprint.
    #[test]
    fn the_real_extraction_is_deterministic() {
        let Ok(cache) = project::cache_dir() else {
            return;
        };
        let dict = cache
            .join("data")
            .join(DEB_NAME.trim_end_matches("_all.deb"));
        if !dict.join(STAMP_FILE).exists() {
            eprintln!("skipped: {} is not unpacked yet", dict.display());
            return;
        }
        let first = extract(&dict).unwrap();
        assert_eq!(first, extract(&dict).unwrap());
        let source = &first[SOURCE_FILE];
        assert!(source.contains(FINGERPRINT), "{source}");
    }
}
