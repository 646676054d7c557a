//! Where prompt tokens come from.
//!
//! With the server's tokenizer model at hand, prompts are lists of token ids
//! drawn from its ordinary vocabulary: the server sees exactly the prompt
//! length the workload asked for, with no retokenization drift. Control,
//! byte, unused and user-defined tokens are left out: a random `<|im_end|>`
//! or raw byte in the middle of a prompt is not what real traffic looks like,
//! and some servers refuse or rewrite them. Without a tokenizer, prompts are
//! random common English words, which most tokenizers encode as about one
//! token each (with the leading space): close, but only approximate.

use std::path::Path;

use fulcrum_gguf::GgufFile;
use fulcrum_model::tokenizer::{TokenType, Tokenizer};
use rand::seq::SliceRandom;
use rand::Rng;

use super::Prompt;
use crate::error::BenchError;

#[derive(Clone, Debug)]
pub enum PromptVocabulary {
    /// Ordinary token ids of a known tokenizer; `source` names it in reports.
    Tokens { source: String, ids: Vec<u32> },
    /// Common English words; prompt lengths in tokens are approximate.
    Words,
}

impl PromptVocabulary {
    /// The ordinary tokens of a GGUF file's tokenizer.
    pub fn from_gguf_path(path: &Path) -> Result<PromptVocabulary, BenchError> {
        let err = |message: String| BenchError::Tokenizer {
            path: path.to_path_buf(),
            message,
        };
        let file = GgufFile::open(path).map_err(|e| err(e.to_string()))?;
        let tokenizer = Tokenizer::from_gguf(&file).map_err(|e| err(e.to_string()))?;
        let ids = normal_token_ids(&tokenizer);
        if ids.is_empty() {
            return Err(err(
                "the vocabulary has no ordinary (non-special) tokens".into()
            ));
        }
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        Ok(PromptVocabulary::from_token_ids(&name, ids))
    }

    pub fn from_token_ids(source: &str, ids: Vec<u32>) -> PromptVocabulary {
        assert!(
            !ids.is_empty(),
            "a token vocabulary needs at least one token"
        );
        PromptVocabulary::Tokens {
            source: source.to_string(),
            ids,
        }
    }

    pub fn words() -> PromptVocabulary {
        PromptVocabulary::Words
    }

    /// Whether prompt lengths are exact token counts.
    pub fn is_exact(&self) -> bool {
        matches!(self, PromptVocabulary::Tokens { .. })
    }

    /// For reports: where the prompts came from.
    pub fn describe(&self) -> String {
        match self {
            PromptVocabulary::Tokens { source, ids } => {
                format!("token ids of {source} ({} ordinary tokens)", ids.len())
            }
            PromptVocabulary::Words => {
                "common English words (prompt lengths approximate)".to_string()
            }
        }
    }

    /// A prompt of `len` random tokens (or words).
    pub fn random_prompt(&self, len: usize, rng: &mut impl Rng) -> Prompt {
        match self {
            PromptVocabulary::Tokens { ids, .. } => Prompt::Tokens(
                (0..len)
                    .map(|_| *ids.choose(rng).expect("non-empty vocabulary"))
                    .collect(),
            ),
            PromptVocabulary::Words => {
                let words: Vec<&str> = (0..len)
                    .map(|_| *COMMON_WORDS.choose(rng).expect("non-empty word list"))
                    .collect();
                Prompt::Text(words.join(" "))
            }
        }
    }
}

fn normal_token_ids(tokenizer: &Tokenizer) -> Vec<u32> {
    (0..tokenizer.vocab_size() as u32)
        .filter(|&id| tokenizer.token_type(id) == Some(TokenType::Normal))
        .collect()
}

/// Short, frequent English words: each is a single token in the common
/// tokenizers (with its leading space).
const COMMON_WORDS: &[&str] = &[
    "the", "of", "and", "to", "in", "is", "it", "that", "was", "for", "on", "are", "with", "as",
    "his", "they", "be", "at", "one", "have", "this", "from", "or", "had", "by", "word", "but",
    "what", "some", "we", "can", "out", "other", "were", "all", "there", "when", "up", "use",
    "your", "how", "said", "an", "each", "she", "which", "do", "their", "time", "if", "will",
    "way", "about", "many", "then", "them", "write", "would", "like", "so", "these", "her", "long",
    "make", "thing", "see", "him", "two", "has", "look", "more", "day", "could", "go", "come",
    "did", "number", "sound", "no", "most", "people", "my", "over", "know", "water", "than",
    "call", "first", "who", "may", "down", "side", "been", "now", "find", "any", "new", "work",
    "part", "take", "get", "place", "made", "live", "where", "after", "back", "little", "only",
    "round", "man", "year", "came", "show", "every", "good", "me", "give", "our", "under", "name",
    "very", "through", "just", "form", "great", "think", "say", "help", "low", "line", "before",
    "turn", "cause", "same", "mean", "move", "right", "boy", "old", "too", "does", "tell", "set",
    "three", "want", "air", "well", "also", "play", "small", "end", "put", "home", "read", "hand",
    "port", "large", "add", "even", "land", "here", "must", "big", "high", "such", "follow", "act",
    "why", "ask", "men", "change", "went", "light", "kind", "off", "need", "house", "picture",
    "try", "us", "again", "animal", "point", "mother", "world", "near", "build", "self", "earth",
    "father", "head", "stand", "own", "page", "should", "country", "found", "answer", "school",
    "grow", "study", "still", "learn", "plant", "cover", "food", "sun", "four", "between", "state",
    "keep", "eye", "never", "last", "let", "thought", "city", "tree", "cross", "farm", "hard",
    "start", "might", "story", "saw", "far", "sea", "draw", "left", "late", "run", "while",
    "press", "close", "night", "real", "life", "few", "north", "open", "seem", "together", "next",
    "white", "children", "begin", "got", "walk", "example", "ease", "paper", "group", "always",
    "music", "those", "both", "mark", "often", "letter", "until", "mile", "river", "car",
];

#[cfg(test)]
mod tests {
    use super::*;
    use fulcrum_gguf::{GgufWriter, MetadataValue};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn only_ordinary_tokens_of_a_gguf_tokenizer_are_drawn() {
        // SentencePiece vocabulary: unknown, BOS, EOS (control), a byte token,
        // a user-defined token, then ordinary pieces.
        let tokens = ["<unk>", "<s>", "</s>", "<0x41>", "<tool>", "▁a", "▁b", "▁c"];
        let types = [2, 3, 3, 6, 4, 1, 1, 1];
        let mut w = GgufWriter::new();
        w.add_metadata(
            "tokenizer.ggml.model",
            MetadataValue::String("llama".into()),
        )
        .add_metadata("tokenizer.ggml.tokens", MetadataValue::strings(tokens))
        .add_metadata(
            "tokenizer.ggml.scores",
            MetadataValue::f32s(tokens.iter().map(|_| 0.0)),
        )
        .add_metadata("tokenizer.ggml.token_type", MetadataValue::i32s(types))
        .add_metadata("tokenizer.ggml.bos_token_id", MetadataValue::U32(1))
        .add_metadata("tokenizer.ggml.eos_token_id", MetadataValue::U32(2));
        let path =
            std::env::temp_dir().join(format!("fulcrum-bench-vocab-{}.gguf", std::process::id()));
        std::fs::write(&path, w.to_bytes()).unwrap();
        let vocab = PromptVocabulary::from_gguf_path(&path);
        std::fs::remove_file(&path).unwrap();
        let vocab = vocab.unwrap();
        let PromptVocabulary::Tokens { ids, source } = &vocab else {
            panic!("token vocabulary expected")
        };
        assert_eq!(ids, &[5, 6, 7]);
        assert!(source.starts_with("fulcrum-bench-vocab-"));
        assert!(vocab.describe().contains("3 ordinary tokens"));
    }

    #[test]
    fn a_missing_file_names_the_path() {
        let err = PromptVocabulary::from_gguf_path(Path::new("/no/such/model.gguf"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("tokenizer of /no/such/model.gguf: "),
            "{err}"
        );
    }

    #[test]
    fn word_prompts_have_the_asked_word_count() {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let Prompt::Text(text) = PromptVocabulary::words().random_prompt(25, &mut rng) else {
            panic!()
        };
        assert_eq!(text.split(' ').count(), 25);
        assert!(!PromptVocabulary::words().is_exact());
    }
}
