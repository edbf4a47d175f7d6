//! The task table of the WordNet gloss benchmark: parts of speech, labels (lexicographer
//! files), roles and [`TASKS`], from which both the split files and the registry are made.

pub use crate::realtext::Role;

/// A part of speech: one WordNet data file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Pos {
    /// Nouns (`data.noun`).
    Noun,
    /// Verbs (`data.verb`).
    Verb,
    /// Adjectives (`data.adj`).
    Adj,
    /// Adverbs (`data.adv`).
    Adv,
}

impl Pos {
    /// Every part of speech, in the order the data files are read.
    pub const ALL: [Pos; 4] = [Pos::Noun, Pos::Verb, Pos::Adj, Pos::Adv];

    /// The name of its data file in WordNet's `dict` folder.
    pub fn file(self) -> &'static str {
        match self {
            Pos::Noun => "data.noun",
            Pos::Verb => "data.verb",
            Pos::Adj => "data.adj",
            Pos::Adv => "data.adv",
        }
    }

    /// The letter of synset ids (`n01234567`, as ImageNet writes WordNet ids).
    pub fn letter(self) -> char {
        match self {
            Pos::Noun => 'n',
            Pos::Verb => 'v',
            Pos::Adj => 'a',
            Pos::Adv => 'r',
        }
    }
}

/// One label of a task: the synsets of one lexicographer file of one part of speech.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Class {
    /// The label name in the files and the registry.
    pub label: &'static str,
    /// The part of speech (data file) its synsets come from.
    pub pos: Pos,
    /// The lexicographer file number (`lexnames(5WN)`): 5 = `noun.animal`, ...
    pub lexfile: u8,
    /// The lexicographer file's name, for the docs and comments.
    pub lexname: &'static str,
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

/// One task of the benchmark.
pub type TaskDef = crate::realtext::TaskDef<Class>;

impl crate::realtext::ClassDef for Class {
    fn label(&self) -> &'static str {
        self.label
    }
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
pub const TASKS: &[TaskDef] = &[
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
