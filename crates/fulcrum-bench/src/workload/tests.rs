use super::*;

fn tokens(n: u32) -> PromptVocabulary {
    PromptVocabulary::from_token_ids("test vocabulary", (100..100 + n).collect())
}

#[test]
fn len_ranges_parse_and_explain_mistakes() {
    assert_eq!(
        "100:1500".parse(),
        Ok(LenRange {
            min: 100,
            max: 1500
        })
    );
    assert_eq!(" 64 ".parse(), Ok(LenRange::fixed(64)));
    assert_eq!(
        "9:3".parse::<LenRange>().unwrap_err(),
        "`9:3` must be N or MIN:MAX with 1 <= MIN <= MAX"
    );
    assert_eq!(
        "0".parse::<LenRange>().unwrap_err(),
        "`0` must be N or MIN:MAX with 1 <= MIN <= MAX"
    );
    assert_eq!(
        "a:3".parse::<LenRange>().unwrap_err(),
        "`a:3`: `a` is not a whole number of tokens"
    );
    assert_eq!(LenRange { min: 1, max: 2 }.to_string(), "1:2");
}

#[test]
fn random_workload_lengths_are_exact_and_in_range() {
    let spec = WorkloadSpec::Random {
        input_len: "10:20".parse().unwrap(),
        output_len: LenRange::fixed(7),
    };
    let mut w = Workload::new(spec, tokens(50), 1).unwrap();
    assert!(!w.is_approximate());
    for _ in 0..200 {
        let r = w.next_request();
        let Prompt::Tokens(ids) = &r.prompt else {
            panic!("token prompt expected")
        };
        assert_eq!(ids.len(), r.prompt_len);
        assert!((10..=20).contains(&r.prompt_len));
        assert!(ids.iter().all(|id| (100..150).contains(id)));
        assert_eq!((r.max_tokens, r.ignore_eos), (7, true));
    }
}

#[test]
fn same_seed_same_requests() {
    let spec = WorkloadSpec::Random {
        input_len: "1:50".parse().unwrap(),
        output_len: "1:9".parse().unwrap(),
    };
    let run = |seed| {
        let mut w = Workload::new(spec.clone(), tokens(1000), seed).unwrap();
        (0..20).map(|_| w.next_request()).collect::<Vec<_>>()
    };
    assert_eq!(run(5), run(5));
    assert_ne!(run(5), run(6));
}

#[test]
fn prefix_workload_shares_the_prefix_and_not_the_suffix() {
    let spec = WorkloadSpec::Prefix {
        prefix_len: 30,
        input_len: LenRange::fixed(10),
        output_len: LenRange::fixed(3),
    };
    let mut w = Workload::new(spec, tokens(30_000), 2).unwrap();
    let (a, b) = (w.next_request(), w.next_request());
    let (Prompt::Tokens(a), Prompt::Tokens(b)) = (a.prompt, b.prompt) else {
        panic!()
    };
    assert_eq!((a.len(), b.len()), (40, 40));
    assert_eq!(a[..30], b[..30]);
    assert_ne!(a[30..], b[30..]);
}

#[test]
fn word_prompts_are_text_and_approximate() {
    let spec = WorkloadSpec::Prefix {
        prefix_len: 5,
        input_len: LenRange::fixed(4),
        output_len: LenRange::fixed(3),
    };
    let mut w = Workload::new(spec, PromptVocabulary::words(), 0).unwrap();
    assert!(w.is_approximate());
    let r = w.next_request();
    let Prompt::Text(text) = &r.prompt else {
        panic!("text prompt expected")
    };
    assert_eq!(text.split_whitespace().count(), 9);
    assert_eq!(r.prompt_len, 9);
}
