//! The server as a real OpenAI client library sees it (`async-openai`):
//! completions, chat, streaming, `n`, `stop`, `logprobs`, `seed`, usage.
//! Greedy requests are deterministic whatever else is batched with them
//! (DESIGN.md), so a streamed answer must equal the whole one.

use async_openai::types::chat::{
    ChatCompletionRequestMessage, ChatCompletionRequestUserMessageArgs,
    ChatCompletionStreamOptions, CompletionFinishReason, CreateChatCompletionRequest,
    CreateChatCompletionRequestArgs, Role,
};
use async_openai::types::completions::{
    CreateCompletionRequest, CreateCompletionRequestArgs, CreateCompletionResponse,
};
use futures_util::StreamExt;

use crate::common::{num_tokens, openai, shared, MODEL};

const PROMPT: &str = "The capital of France is";

fn completion(max_tokens: u32) -> CreateCompletionRequestArgs {
    let mut args = CreateCompletionRequestArgs::default();
    args.model(MODEL)
        .prompt(PROMPT)
        .max_tokens(max_tokens)
        .temperature(0.0);
    args
}

fn streaming(mut request: CreateCompletionRequest) -> CreateCompletionRequest {
    request.stream = Some(true);
    request.stream_options = Some(ChatCompletionStreamOptions {
        include_usage: Some(true),
        include_obfuscation: None,
    });
    request
}

/// Folds a completion stream: text per choice, finish reasons, the usage.
async fn stream_completion(
    request: CreateCompletionRequest,
) -> (
    Vec<String>,
    Vec<Option<CompletionFinishReason>>,
    async_openai::types::chat::CompletionUsage,
) {
    let client = openai(shared());
    let mut stream = client
        .completions()
        .create_stream(streaming(request))
        .await
        .unwrap();
    let (mut texts, mut reasons, mut usage) = (Vec::new(), Vec::new(), None);
    while let Some(chunk) = stream.next().await {
        let chunk: CreateCompletionResponse = chunk.unwrap();
        for choice in chunk.choices {
            let i = choice.index as usize;
            if texts.len() <= i {
                texts.resize(i + 1, String::new());
                reasons.resize(i + 1, None);
            }
            texts[i].push_str(&choice.text);
            if choice.finish_reason.is_some() {
                assert!(reasons[i].is_none(), "choice {i} finished twice");
                reasons[i] = choice.finish_reason;
            }
        }
        if let Some(u) = chunk.usage {
            assert!(usage.is_none(), "two usage chunks");
            usage = Some(u);
        }
    }
    (
        texts,
        reasons,
        usage.expect("no usage chunk with include_usage"),
    )
}

#[tokio::test]
async fn completion_counts_usage_and_streams_the_same_text() {
    let base = shared();
    let request = completion(8).build().unwrap();
    let response = openai(base)
        .completions()
        .create(request.clone())
        .await
        .unwrap();
    assert_eq!(response.object, "text_completion");
    assert_eq!(response.model, MODEL);
    assert_eq!(response.choices.len(), 1);
    let choice = &response.choices[0];
    assert!(!choice.text.is_empty());
    let usage = response.usage.clone().unwrap();
    assert_eq!(usage.prompt_tokens, num_tokens(base, PROMPT).await);
    assert!(usage.completion_tokens >= 1 && usage.completion_tokens <= 8);
    assert_eq!(
        usage.total_tokens,
        usage.prompt_tokens + usage.completion_tokens
    );
    if choice.finish_reason == Some(CompletionFinishReason::Length) {
        assert_eq!(usage.completion_tokens, 8);
    }

    let (texts, reasons, stream_usage) = stream_completion(request).await;
    assert_eq!(texts, vec![choice.text.clone()]);
    assert_eq!(reasons, vec![choice.finish_reason]);
    assert_eq!(
        (
            stream_usage.prompt_tokens,
            stream_usage.completion_tokens,
            stream_usage.total_tokens
        ),
        (
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.total_tokens
        )
    );
}

fn user(text: &str) -> ChatCompletionRequestMessage {
    ChatCompletionRequestUserMessageArgs::default()
        .content(text)
        .build()
        .unwrap()
        .into()
}

fn chat(max_tokens: u32) -> CreateChatCompletionRequestArgs {
    let mut args = CreateChatCompletionRequestArgs::default();
    args.model(MODEL)
        .messages([user("What is the capital of France?")])
        .max_completion_tokens(max_tokens)
        .temperature(0.0);
    args
}

#[tokio::test]
async fn chat_answers_with_the_template_and_streams_the_same_text() {
    let client = openai(shared());
    let request: CreateChatCompletionRequest = chat(10).build().unwrap();
    let response = client.chat().create(request.clone()).await.unwrap();
    assert_eq!(response.object, "chat.completion");
    let choice = &response.choices[0];
    assert_eq!(choice.message.role, Role::Assistant);
    let content = choice.message.content.clone().unwrap();
    assert!(!content.is_empty());
    let usage = response.usage.clone().unwrap();
    // The template wraps the message in role markers: more tokens than the text.
    assert!(usage.prompt_tokens > num_tokens(shared(), "What is the capital of France?").await);
    assert_eq!(
        usage.total_tokens,
        usage.prompt_tokens + usage.completion_tokens
    );

    let mut request = request;
    request.stream = Some(true);
    request.stream_options = Some(ChatCompletionStreamOptions {
        include_usage: Some(true),
        include_obfuscation: None,
    });
    let mut stream = client.chat().create_stream(request).await.unwrap();
    let (mut text, mut first_role, mut finish, mut stream_usage) =
        (String::new(), None, None, None);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        assert_eq!(chunk.object, "chat.completion.chunk");
        for c in chunk.choices {
            if first_role.is_none() {
                first_role = Some(c.delta.role);
            }
            text.push_str(c.delta.content.as_deref().unwrap_or(""));
            finish = finish.or(c.finish_reason);
        }
        stream_usage = stream_usage.or(chunk.usage);
    }
    assert_eq!(
        first_role,
        Some(Some(Role::Assistant)),
        "the first chunk carries the role"
    );
    assert_eq!(text, content);
    assert_eq!(finish, choice.finish_reason);
    // (The second run may find the prompt in the prefix cache.)
    let stream_usage = stream_usage.expect("no usage chunk with include_usage");
    assert_eq!(
        (
            stream_usage.prompt_tokens,
            stream_usage.completion_tokens,
            stream_usage.total_tokens
        ),
        (
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.total_tokens
        )
    );
}

#[tokio::test]
async fn n_gives_indexed_choices_and_counts_all_their_tokens() {
    let request = completion(6).n(3).temperature(0.9).seed(7).build().unwrap();
    let response = openai(shared())
        .completions()
        .create(request.clone())
        .await
        .unwrap();
    let mut indices: Vec<u32> = response.choices.iter().map(|c| c.index).collect();
    indices.sort_unstable();
    assert_eq!(indices, vec![0, 1, 2]);
    let usage = response.usage.unwrap();
    if response
        .choices
        .iter()
        .all(|c| c.finish_reason == Some(CompletionFinishReason::Length))
    {
        assert_eq!(usage.completion_tokens, 18);
    } else {
        assert!(usage.completion_tokens <= 18);
    }
    // Streaming: every choice streams and finishes once.
    let (texts, reasons, stream_usage) = stream_completion(request).await;
    assert_eq!(texts.len(), 3);
    assert!(reasons.iter().all(Option::is_some), "{reasons:?}");
    assert_eq!(stream_usage.prompt_tokens, usage.prompt_tokens);
}

#[tokio::test]
async fn stop_ends_the_text_before_the_stop_string() {
    let client = openai(shared());
    let greedy = client
        .completions()
        .create(completion(12).build().unwrap())
        .await
        .unwrap();
    let text = greedy.choices[0].text.clone();
    // A stop string from the middle of the greedy text: the answer must end
    // right before its first occurrence.
    let stop = text
        .split_whitespace()
        .nth(1)
        .expect("a greedy text of a few words")
        .to_string();
    let expected = &text[..text.find(&stop).unwrap()];
    let request = completion(12)
        .stop(vec![stop.clone(), "@@never@@".to_string()])
        .build()
        .unwrap();
    let stopped = client.completions().create(request.clone()).await.unwrap();
    assert_eq!(
        stopped.choices[0].text, expected,
        "stop {stop:?} in {text:?}"
    );
    assert_eq!(
        stopped.choices[0].finish_reason,
        Some(CompletionFinishReason::Stop)
    );

    let (texts, reasons, _) = stream_completion(request).await;
    assert_eq!(texts, vec![expected.to_string()]);
    assert_eq!(reasons, vec![Some(CompletionFinishReason::Stop)]);
}

#[tokio::test]
async fn completion_logprobs_cover_every_token() {
    let request = completion(8).logprobs(2u8).build().unwrap();
    let response = openai(shared())
        .completions()
        .create(request)
        .await
        .unwrap();
    let choice = &response.choices[0];
    let logprobs = choice.logprobs.as_ref().expect("logprobs asked for");
    let n = response.usage.unwrap().completion_tokens as usize;
    assert_eq!(logprobs.tokens.len(), n);
    assert_eq!(logprobs.token_logprobs.len(), n);
    assert_eq!(logprobs.top_logprobs.len(), n);
    assert_eq!(logprobs.text_offset.first(), Some(&0));
    assert!(logprobs.text_offset.windows(2).all(|w| w[0] <= w[1]));
    if choice.finish_reason == Some(CompletionFinishReason::Length) {
        assert_eq!(logprobs.tokens.concat(), choice.text);
    }
    for (chosen, top) in logprobs.token_logprobs.iter().zip(&logprobs.top_logprobs) {
        let chosen = chosen.expect("a logprob per token");
        assert!(chosen <= 0.0);
        let top = top.as_object().expect("top_logprobs entries are objects");
        assert!(!top.is_empty() && top.len() <= 2, "{top:?}");
        // Greedy: the chosen token is the most likely one.
        let best = top
            .values()
            .filter_map(|v| v.as_f64())
            .fold(f64::MIN, f64::max);
        assert!(
            (f64::from(chosen) - best).abs() < 1e-4,
            "{chosen} vs {best}"
        );
    }
}

#[tokio::test]
async fn chat_logprobs_list_top_alternatives() {
    let request = chat(6).logprobs(true).top_logprobs(3u8).build().unwrap();
    let response = openai(shared()).chat().create(request).await.unwrap();
    let content = response.choices[0]
        .logprobs
        .as_ref()
        .unwrap()
        .content
        .as_ref()
        .unwrap();
    assert_eq!(
        content.len(),
        response.usage.unwrap().completion_tokens as usize
    );
    for entry in content {
        assert_eq!(entry.top_logprobs.len(), 3);
        assert!(entry.logprob <= 0.0);
        assert_eq!(entry.bytes.as_deref(), Some(entry.token.as_bytes()));
    }
}

#[tokio::test]
async fn a_seed_reproduces_a_sampled_completion() {
    let client = openai(shared());
    let seeded = |seed: i64| completion(12).temperature(1.0).seed(seed).build().unwrap();
    let first = client.completions().create(seeded(1234)).await.unwrap();
    // Run the same seed again while another request shares the batch.
    let (completions_a, completions_b) = (client.completions(), client.completions());
    let (second, _) = tokio::join!(
        completions_a.create(seeded(1234)),
        completions_b.create(seeded(99))
    );
    assert_eq!(first.choices[0].text, second.unwrap().choices[0].text);
}

#[tokio::test]
async fn models_lists_the_served_name_and_both_names_are_accepted() {
    let client = openai(shared());
    let models = client.models().list().await.unwrap();
    assert_eq!(models.data.len(), 1);
    assert_eq!(models.data[0].id, MODEL);
    let own_name = crate::common::model().name.clone();
    let request = CreateCompletionRequestArgs::default()
        .model(own_name)
        .prompt("Hi")
        .max_tokens(1u32)
        .build()
        .unwrap();
    let response = client.completions().create(request).await.unwrap();
    assert_eq!(response.choices.len(), 1);
}

#[tokio::test]
async fn a_batch_of_prompts_numbers_choices_prompt_by_prompt() {
    let request = CreateCompletionRequestArgs::default()
        .model(MODEL)
        .prompt(vec!["The capital of France is", "One, two, three,"])
        .max_tokens(4u32)
        .temperature(0.0)
        .n(2)
        .build()
        .unwrap();
    let response = openai(shared())
        .completions()
        .create(request)
        .await
        .unwrap();
    let mut choices = response.choices;
    choices.sort_by_key(|c| c.index);
    assert_eq!(
        choices.iter().map(|c| c.index).collect::<Vec<_>>(),
        vec![0, 1, 2, 3]
    );
    // Greedy: both choices of a prompt agree, and the prompts differ.
    assert_eq!(choices[0].text, choices[1].text);
    assert_eq!(choices[2].text, choices[3].text);
    assert_ne!(choices[0].text, choices[2].text);
    let single = openai(shared())
        .completions()
        .create(completion(4).build().unwrap())
        .await
        .unwrap();
    assert_eq!(choices[0].text, single.choices[0].text);
    let usage = response.usage.unwrap();
    assert_eq!(
        usage.prompt_tokens,
        num_tokens(shared(), PROMPT).await + num_tokens(shared(), "One, two, three,").await
    );
}
