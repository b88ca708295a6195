//! Ollama export: the Jinja chat template translated to Ollama's Go
//! template renders the same text as the Jinja one (Ollama's side rendered
//! by gtmpl with Ollama's chat semantics), and the Modelfile written for it
//! reads back as written.

use finetune::chat_template::{ChatTemplate, Message};
use finetune::export::go_template::{render_ollama, translate, OllamaTemplate};
use finetune::export::ollama::{read_modelfile, write_modelfile};

/// A real model's chat template, from tests/fixtures/chat_templates.
struct Fixture {
    chat: ChatTemplate,
    adds_bos: bool,
}

fn fixture(name: &str) -> Fixture {
    let path = format!(
        "{}/tests/fixtures/chat_templates/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let json: serde_json::Value = serde_json::from_str(&text).expect("fixture is JSON");
    let token = |key: &str| json[key].as_str().filter(|s| !s.is_empty());
    let chat = ChatTemplate::new(
        json["chat_template"].as_str().expect("chat_template"),
        token("bos_token"),
        token("eos_token"),
    )
    .expect("template compiles");
    Fixture {
        chat,
        adds_bos: json["add_bos_token"].as_bool().unwrap_or(false),
    }
}

/// The templates the translation reproduces exactly.
const SUPPORTED: &[&str] = &[
    "smollm2",
    "qwen2.5",
    "qwen3",
    "gemma2",
    "gemma3",
    "llama3",
    "llama3.1",
    "phi3.5",
    "deepseek-r1-distill-llama",
];

fn m(role: &str, content: &str) -> Message {
    Message::new(role, content)
}

/// Conversations ending where the assistant's reply starts: (name, messages).
fn conversations() -> Vec<(&'static str, Vec<Message>)> {
    let system = m("system", "You are a pirate.\nAlways say 'arr'.");
    let turns = vec![
        m("user", "Where is the treasure?"),
        m("assistant", "Under the palm tree, arr."),
        m("user", "Which one?\nThere are \"two\"."),
        m("assistant", "The taller {{ one }}."),
        m("user", "Thanks."),
    ];
    let mut with_system = vec![system.clone()];
    with_system.extend(turns.clone());
    vec![
        ("multi-turn with system", with_system),
        ("multi-turn without system", turns.clone()),
        ("one user turn", turns[..1].to_vec()),
        ("system and one user turn", vec![system, turns[0].clone()]),
    ]
}

/// What Ollama's prompt must be: the Jinja rendering with the generation
/// prompt, less the BOS Ollama's tokenizer adds itself.
fn jinja(f: &Fixture, messages: &[Message], generation: bool) -> Option<String> {
    let text = f.chat.render(messages, generation).ok()?;
    Some(match text.strip_prefix(f.chat.bos_token.as_str()) {
        Some(rest) if f.adds_bos && !f.chat.bos_token.is_empty() => rest.to_string(),
        _ => text,
    })
}

#[test]
fn modelfile_template_renders_like_the_chat_template_on_multi_turn_system_and_no_system_conversations(
) {
    for name in SUPPORTED {
        let f = fixture(name);
        let t = translate(&f.chat, f.adds_bos).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut compared = 0;
        for (what, messages) in conversations() {
            // Gemma 2's template refuses system messages itself.
            let Some(want) = jinja(&f, &messages, true) else {
                continue;
            };
            let got = render_ollama(&t.template, &messages, t.system.as_deref()).unwrap();
            assert_eq!(got, want, "{name}, {what}");
            let bare = render_ollama(&t.template, &messages, None).unwrap();
            assert_eq!(bare, want, "{name}, {what}, without the Modelfile SYSTEM");
            compared += 1;
        }
        assert!(
            compared >= 2,
            "{name}: only {compared} conversations compared"
        );
    }
}

#[test]
fn chatml_default_system_prompt_becomes_the_modelfile_system_and_a_new_one_replaces_it() {
    let f = fixture("smollm2");
    let t = translate(&f.chat, f.adds_bos).unwrap();
    assert_eq!(
        t.system.as_deref(),
        Some("You are a helpful AI assistant named SmolLM, trained by Hugging Face")
    );
    assert_eq!(t.stops, ["<|im_end|>"]);
    let chat = [m("user", "Hi")];
    assert_eq!(
        render_ollama(&t.template, &chat, Some("Be brief.")).unwrap(),
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    );
}

#[test]
fn gemma3_system_prompt_is_merged_into_the_first_user_turn() {
    let f = fixture("gemma3");
    let t = translate(&f.chat, f.adds_bos).unwrap();
    let chat = [m("system", "Be brief."), m("user", "Hi")];
    assert_eq!(
        render_ollama(&t.template, &chat, None).unwrap(),
        "<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n"
    );
    assert_eq!(t.stops, ["<end_of_turn>"]);
    assert_eq!(t.system, None);
}

#[test]
fn qwen3_final_assistant_turn_is_continued_with_its_empty_think_block() {
    let f = fixture("qwen3");
    let t = translate(&f.chat, f.adds_bos).unwrap();
    let chat = [m("user", "Hi"), m("assistant", "Hello")];
    let got = render_ollama(&t.template, &chat, None).unwrap();
    assert_eq!(
        got,
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nHello"
    );
    // Training renders the same turn closed: the continuation is its prefix.
    assert!(jinja(&f, &chat, false).unwrap().starts_with(&got));
    // Earlier assistant turns carry no think block, as in the Jinja template.
    let longer = [m("user", "Hi"), m("assistant", "Hello"), m("user", "Bye")];
    assert_eq!(
        render_ollama(&t.template, &longer, None).unwrap(),
        jinja(&f, &longer, true).unwrap()
    );
}

#[test]
fn no_double_bos_when_the_gguf_adds_bos_and_one_bos_when_it_does_not() {
    for (name, bos) in [("gemma3", "<bos>"), ("llama3", "<|begin_of_text|>")] {
        let f = fixture(name);
        let chat = [m("user", "Hi")];
        let ollama_adds = translate(&f.chat, true).unwrap();
        assert!(!ollama_adds.template.contains(bos), "{name}");
        let text = render_ollama(&ollama_adds.template, &chat, None).unwrap();
        assert!(!text.starts_with(bos), "{name}: {text:?}");
        assert_eq!(format!("{bos}{text}"), f.chat.render(&chat, true).unwrap());

        let template_adds = translate(&f.chat, false).unwrap();
        let text = render_ollama(&template_adds.template, &chat, None).unwrap();
        assert_eq!(text.matches(bos).count(), 1, "{name}: {text:?}");
        assert_eq!(text, f.chat.render(&chat, true).unwrap());
    }
}

#[test]
fn stop_strings_are_the_end_of_turn_token_and_the_eos() {
    let stops = |name| {
        let f = fixture(name);
        translate(&f.chat, f.adds_bos).unwrap().stops
    };
    assert_eq!(stops("phi3.5"), ["<|end|>", "<|endoftext|>"]);
    assert_eq!(stops("llama3.1"), ["<|eot_id|>"]);
    assert_eq!(stops("gemma2"), ["<end_of_turn>", "<eos>"]);
    assert_eq!(stops("qwen2.5"), ["<|im_end|>"]);
}

#[test]
fn template_putting_the_system_prompt_in_the_last_user_turn_is_refused() {
    let f = fixture("mistral-nemo");
    let e = translate(&f.chat, f.adds_bos).unwrap_err().to_string();
    assert!(
        e.contains("cannot translate the chat template starting"),
        "{e}"
    );
    assert!(e.contains("in order"), "{e}");
}

#[test]
fn template_whose_turns_depend_on_their_position_is_refused_naming_the_text() {
    let source =
        "{% for m in messages %}[{{ loop.index }}] {{ m.role }}: {{ m.content }}\n{% endfor %}\
                  {% if add_generation_prompt %}assistant: {% endif %}";
    let chat = ChatTemplate::new(source, None, None).unwrap();
    let e = translate(&chat, false).unwrap_err().to_string();
    assert!(e.contains("[{{ loop.index }}]"), "names the template: {e}");
    assert!(e.contains("in one conversation and as"), "{e}");
}

#[test]
fn template_that_changes_message_contents_is_refused_at_the_first_difference() {
    // Line breaks become spaces: the probes (one line each) pass, the
    // check on multi-line contents does not.
    let source =
        "{% for m in messages %}<{{ m.role }}>{{ m.content | replace('\n', ' ') }}</s>{% endfor %}\
                  {% if add_generation_prompt %}<assistant>{% endif %}";
    let chat = ChatTemplate::new(source, None, None).unwrap();
    let e = translate(&chat, false).unwrap_err().to_string();
    assert!(e.contains("differs from it on a"), "{e}");
    assert!(e.contains("at byte"), "{e}");
}

fn translated(name: &str) -> OllamaTemplate {
    let f = fixture(name);
    translate(&f.chat, f.adds_bos).unwrap()
}

#[test]
fn modelfile_round_trip_keeps_templates_systems_and_stops_with_awkward_quoting() {
    let dir = tempfile::tempdir().unwrap();
    let awkward = OllamaTemplate {
        // A `"""` before a line end would end Ollama's TEMPLATE value early.
        template:
            "{{- range .Messages }}Say \"\"\"\n{{ .Content }}\"\"\" # not a comment\n{{ end }}"
                .into(),
        stops: vec!["\"quoted\" stop".into(), " padded ".into(), "</s>".into()],
        system: Some("Answer in \"\"\"triple quotes\"\"\".\n  Indented line.".into()),
    };
    let extra = [
        ("num_ctx", "4096".to_string()),
        ("temperature", "0.7".to_string()),
    ];
    let path = write_modelfile(
        dir.path(),
        "./model file.gguf",
        Some("adapter.gguf"),
        &awkward,
        &extra,
    )
    .unwrap();
    assert_eq!(path, dir.path().join("Modelfile"));
    let back = read_modelfile(&path).unwrap();
    assert_eq!(back.from, "./model file.gguf");
    assert_eq!(back.adapter.as_deref(), Some("adapter.gguf"));
    assert_eq!(back.system, awkward.system);
    assert_eq!(back.stops(), ["\"quoted\" stop", " padded ", "</s>"]);
    assert!(back.parameters.contains(&("num_ctx".into(), "4096".into())));
    assert!(back
        .parameters
        .contains(&("temperature".into(), "0.7".into())));
    // The template may be guarded, but renders the same.
    let chat = [m("user", "Hi")];
    assert_eq!(
        render_ollama(back.template.as_deref().unwrap(), &chat, None).unwrap(),
        render_ollama(&awkward.template, &chat, None).unwrap()
    );

    // A real translation reads back byte for byte.
    let dir = tempfile::tempdir().unwrap();
    let qwen = translated("qwen2.5");
    let path = write_modelfile(dir.path(), "model.gguf", None, &qwen, &[]).unwrap();
    let back = read_modelfile(&path).unwrap();
    assert_eq!(back.template.as_deref(), Some(qwen.template.as_str()));
    assert_eq!(back.system, qwen.system);
    assert_eq!(back.stops(), qwen.stops);
    assert_eq!(back.adapter, None);
}

#[test]
fn modelfile_is_never_written_over_an_existing_one() {
    let dir = tempfile::tempdir().unwrap();
    let t = translated("smollm2");
    write_modelfile(dir.path(), "model.gguf", None, &t, &[]).unwrap();
    let e = write_modelfile(dir.path(), "other.gguf", None, &t, &[]).unwrap_err();
    assert!(e.to_string().contains("already exists"), "{e}");
    let back = read_modelfile(&dir.path().join("Modelfile")).unwrap();
    assert_eq!(back.from, "model.gguf");
}

#[test]
fn value_ollama_cannot_read_back_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = translated("smollm2");
    // A zero-width space: Ollama's parser drops it.
    t.system = Some("invisible\u{200b}space".into());
    let e = write_modelfile(dir.path(), "model.gguf", None, &t, &[]).unwrap_err();
    assert!(e.to_string().contains("SYSTEM"), "{e}");
    assert!(!dir.path().join("Modelfile").exists());
}

/// Every template llama.cpp collects (in .cache/llama.cpp, when there):
/// each one translates to a template that renders exactly like it, or is
/// refused with a reason; none is translated wrongly.
#[test]
fn every_llama_cpp_template_is_translated_exactly_or_refused() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(".cache/llama.cpp/src/models/templates");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        eprintln!(
            "skipping: no {} (`make llama-cpp` unpacks it)",
            dir.display()
        );
        return;
    };
    let (mut translated, mut refused) = (0, 0);
    for entry in entries {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("jinja") {
            continue;
        }
        let source = std::fs::read_to_string(&path).unwrap();
        let Ok(chat) = ChatTemplate::new(&source, Some("<s>"), Some("</s>")) else {
            continue; // Jinja our renderer does not compile
        };
        let f = Fixture {
            chat,
            adds_bos: true,
        };
        let t = match translate(&f.chat, f.adds_bos) {
            Ok(t) => t,
            Err(e) => {
                assert!(
                    e.to_string().contains("cannot translate"),
                    "{}: {e}",
                    path.display()
                );
                refused += 1;
                continue;
            }
        };
        for (what, messages) in conversations() {
            let Some(want) = jinja(&f, &messages, true) else {
                continue;
            };
            let got = render_ollama(&t.template, &messages, t.system.as_deref()).unwrap();
            assert_eq!(got, want, "{}, {what}", path.display());
        }
        translated += 1;
    }
    eprintln!("{translated} templates translated, {refused} refused");
    assert!(
        translated > refused,
        "{translated} translated, {refused} refused"
    );
}

/// Meta's Llama 2 chat template (tokenizer_config.json of
/// meta-llama/Llama-2-7b-chat-hf): the system prompt inside the first
/// `[INST]`, BOS before every user turn.
const LLAMA2: &str = "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}\
{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}\
{% set system_message = false %}{% endif %}{% for message in loop_messages %}\
{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}\
{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}\
{% if loop.index0 == 0 and system_message != false %}\
{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}\
{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}\
{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}\
{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";

#[test]
fn llama2_system_block_in_the_first_inst_and_bos_before_each_user_turn_are_reproduced() {
    let f = Fixture {
        chat: ChatTemplate::new(LLAMA2, Some("<s>"), Some("</s>")).unwrap(),
        adds_bos: true,
    };
    let t = translate(&f.chat, f.adds_bos).unwrap();
    for (what, messages) in conversations() {
        let want = jinja(&f, &messages, true).unwrap();
        assert_eq!(
            render_ollama(&t.template, &messages, None).unwrap(),
            want,
            "{what}"
        );
    }
    let chat = [
        m("system", "Be brief."),
        m("user", "Hi"),
        m("assistant", "Hello"),
        m("user", "Bye"),
    ];
    assert_eq!(
        render_ollama(&t.template, &chat, None).unwrap(),
        "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello </s><s>[INST] Bye [/INST]"
    );
    assert_eq!(t.stops, ["</s>"]);
}

#[test]
fn modelfile_is_laid_out_as_ollama_writes_them() {
    let dir = tempfile::tempdir().unwrap();
    let t = translated("smollm2");
    let extra = [("num_ctx", "2048".to_string())];
    let path = write_modelfile(dir.path(), "model.gguf", Some("adapter.gguf"), &t, &extra).unwrap();
    let text = std::fs::read_to_string(path).unwrap();
    assert!(
        text.contains("\nFROM model.gguf\nADAPTER adapter.gguf\nTEMPLATE \"\"\"{{"),
        "{text}"
    );
    assert!(
        text.contains(
            "\nSYSTEM \"You are a helpful AI assistant named SmolLM, trained by Hugging Face\"\n"
        ),
        "{text}"
    );
    assert!(
        text.ends_with("\nPARAMETER stop \"<|im_end|>\"\nPARAMETER num_ctx 2048\n"),
        "{text}"
    );
}

#[test]
fn render_ollama_inserts_the_modelfile_system_and_merges_consecutive_turns_as_ollama_does() {
    // In the style of Ollama's own ChatML templates.
    let template = "{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 -}}
<|im_start|>{{ .Role }}
{{ .Content }}{{ if not $last }}<|im_end|>
{{ end }}
{{- if and (ne .Role \"assistant\") $last }}<|im_end|>
<|im_start|>assistant
{{ end }}
{{- end }}";
    let chat = [m("user", "a"), m("user", "b")];
    assert_eq!(
        render_ollama(template, &chat, Some("S")).unwrap(),
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\na\n\nb<|im_end|>\n<|im_start|>assistant\n"
    );
    // A conversation's own system message wins over the Modelfile's.
    let own = [m("system", "Mine"), m("user", "a")];
    let text = render_ollama(template, &own, Some("S")).unwrap();
    assert!(
        text.starts_with("<|im_start|>system\nMine<|im_end|>\n"),
        "{text}"
    );
    assert!(!text.contains("\nS<|im_end|>"), "{text}");
    // Ollama's older .Prompt/.Response templates are not rendered here.
    let e = render_ollama("{{ .Prompt }}", &chat, None).unwrap_err();
    assert!(e.to_string().contains(".Messages"), "{e}");
}
