"""Per-language text the build stage puts into training data, written for this project.

For each target language: natural system prompts (the first is the default; the others are used
when `build.system_prompt_variants` is on, so the model does not hang on one string), the
phrasing of translation and continuation tasks, and style instructions for style tags. Languages
missing a phrase fall back to English phrasing, which still teaches the task.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Lang:
    name_en: str
    system: tuple[str, ...]
    to_target: str = ""  # "translate into <this language>:" written in this language
    to_english: str = ""  # "translate into English:" written in this language
    continue_text: str = ""  # "continue this text:" written in this language
    styles: dict[str, str] = field(default_factory=dict)


LANGS: dict[str, Lang] = {
    "de": Lang(
        "German",
        (
            "Du bist ein hilfreicher Assistent, der immer auf Deutsch antwortet.",
            "Du bist ein freundlicher KI-Assistent. Antworte stets auf Deutsch.",
            "Beantworte alle Fragen hilfsbereit und in deutscher Sprache.",
        ),
        "Übersetze den folgenden Text ins Deutsche:",
        "Übersetze den folgenden Text ins Englische:",
        "Setze den folgenden Text fort:",
        {
            "funny": "Antworte lustig und mit einem Augenzwinkern.",
            "sad": "Antworte in einem traurigen, melancholischen Ton.",
            "pirate": "Antworte wie ein Pirat.",
            "angry": "Antworte in einem verärgerten Ton.",
            "formal": "Antworte förmlich und höflich (Sie-Form).",
            "casual": "Antworte locker und umgangssprachlich.",
            "poetic": "Antworte in poetischer Sprache.",
        },
    ),
    "en": Lang(
        "English",
        (
            "You are a helpful assistant who always answers in English.",
            "You are a friendly AI assistant. Always reply in English.",
            "Answer every question helpfully, in English.",
        ),
        "Translate the following text into English:",
        "Translate the following text into English:",
        "Continue the following text:",
        {
            "funny": "Answer in a funny, playful way.",
            "sad": "Answer in a sad, melancholic tone.",
            "pirate": "Answer like a pirate.",
            "angry": "Answer in an angry tone.",
            "formal": "Answer formally and politely.",
            "casual": "Answer in a relaxed, casual way.",
            "poetic": "Answer in poetic language.",
        },
    ),
    "fr": Lang(
        "French",
        (
            "Tu es un assistant serviable qui répond toujours en français.",
            "Tu es un assistant IA amical. Réponds toujours en français.",
            "Réponds à toutes les questions de manière utile, en français.",
        ),
        "Traduis le texte suivant en français :",
        "Traduis le texte suivant en anglais :",
        "Continue le texte suivant :",
        {
            "funny": "Réponds de façon drôle et espiègle.",
            "sad": "Réponds sur un ton triste et mélancolique.",
            "pirate": "Réponds comme un pirate.",
            "angry": "Réponds sur un ton fâché.",
            "formal": "Réponds de manière formelle et polie (vouvoiement).",
        },
    ),
    "es": Lang(
        "Spanish",
        (
            "Eres un asistente útil que siempre responde en español.",
            "Eres un asistente de IA amable. Responde siempre en español.",
            "Responde a todas las preguntas de forma útil y en español.",
        ),
        "Traduce el siguiente texto al español:",
        "Traduce el siguiente texto al inglés:",
        "Continúa el siguiente texto:",
        {
            "funny": "Responde de forma divertida.",
            "sad": "Responde en un tono triste y melancólico.",
            "pirate": "Responde como un pirata.",
            "angry": "Responde en un tono enfadado.",
            "formal": "Responde de manera formal y cortés (de usted).",
        },
    ),
    "it": Lang(
        "Italian",
        (
            "Sei un assistente disponibile che risponde sempre in italiano.",
            "Sei un assistente IA cordiale. Rispondi sempre in italiano.",
        ),
        "Traduci il seguente testo in italiano:",
        "Traduci il seguente testo in inglese:",
        "Continua il seguente testo:",
        {"funny": "Rispondi in modo divertente.", "pirate": "Rispondi come un pirata.", "formal": "Rispondi in modo formale e cortese."},
    ),
    "pt": Lang(
        "Portuguese",
        (
            "Você é um assistente prestativo que sempre responde em português.",
            "Você é um assistente de IA simpático. Responda sempre em português.",
        ),
        "Traduza o seguinte texto para o português:",
        "Traduza o seguinte texto para o inglês:",
        "Continue o seguinte texto:",
        {"funny": "Responda de forma engraçada.", "pirate": "Responda como um pirata.", "formal": "Responda de forma formal e educada."},
    ),
    "nl": Lang(
        "Dutch",
        (
            "Je bent een behulpzame assistent die altijd in het Nederlands antwoordt.",
            "Je bent een vriendelijke AI-assistent. Antwoord altijd in het Nederlands.",
        ),
        "Vertaal de volgende tekst naar het Nederlands:",
        "Vertaal de volgende tekst naar het Engels:",
        "Ga verder met de volgende tekst:",
        {"funny": "Antwoord op een grappige manier.", "pirate": "Antwoord als een piraat.", "formal": "Antwoord formeel en beleefd."},
    ),
    "pl": Lang(
        "Polish",
        ("Jesteś pomocnym asystentem, który zawsze odpowiada po polsku.",),
        "Przetłumacz poniższy tekst na język polski:",
        "Przetłumacz poniższy tekst na język angielski:",
        "Kontynuuj poniższy tekst:",
    ),
    "cs": Lang(
        "Czech",
        ("Jsi užitečný asistent, který vždy odpovídá česky.",),
        "Přelož následující text do češtiny:",
        "Přelož následující text do angličtiny:",
        "Pokračuj v následujícím textu:",
    ),
    "sv": Lang(
        "Swedish",
        ("Du är en hjälpsam assistent som alltid svarar på svenska.",),
        "Översätt följande text till svenska:",
        "Översätt följande text till engelska:",
        "Fortsätt följande text:",
    ),
    "da": Lang(
        "Danish",
        ("Du er en hjælpsom assistent, der altid svarer på dansk.",),
        "Oversæt følgende tekst til dansk:",
        "Oversæt følgende tekst til engelsk:",
        "Fortsæt følgende tekst:",
    ),
    "nb": Lang(
        "Norwegian Bokmål",
        ("Du er en hjelpsom assistent som alltid svarer på norsk.",),
        "Oversett følgende tekst til norsk:",
        "Oversett følgende tekst til engelsk:",
        "Fortsett følgende tekst:",
    ),
    "fi": Lang(
        "Finnish",
        ("Olet avulias avustaja, joka vastaa aina suomeksi.",),
        "Käännä seuraava teksti suomeksi:",
        "Käännä seuraava teksti englanniksi:",
        "Jatka seuraavaa tekstiä:",
    ),
    "hu": Lang(
        "Hungarian",
        ("Segítőkész asszisztens vagy, aki mindig magyarul válaszol.",),
        "Fordítsd le a következő szöveget magyarra:",
        "Fordítsd le a következő szöveget angolra:",
        "Folytasd a következő szöveget:",
    ),
    "ro": Lang(
        "Romanian",
        ("Ești un asistent util care răspunde întotdeauna în limba română.",),
        "Tradu următorul text în limba română:",
        "Tradu următorul text în limba engleză:",
        "Continuă textul următor:",
    ),
    "el": Lang(
        "Greek",
        ("Είσαι ένας χρήσιμος βοηθός που απαντά πάντα στα ελληνικά.",),
        "Μετάφρασε το παρακάτω κείμενο στα ελληνικά:",
        "Μετάφρασε το παρακάτω κείμενο στα αγγλικά:",
        "Συνέχισε το παρακάτω κείμενο:",
    ),
    "ru": Lang(
        "Russian",
        ("Ты полезный ассистент, который всегда отвечает на русском языке.",),
        "Переведи следующий текст на русский язык:",
        "Переведи следующий текст на английский язык:",
        "Продолжи следующий текст:",
    ),
    "uk": Lang(
        "Ukrainian",
        ("Ти корисний асистент, який завжди відповідає українською мовою.",),
        "Переклади наступний текст українською мовою:",
        "Переклади наступний текст англійською мовою:",
        "Продовж наступний текст:",
    ),
    "tr": Lang(
        "Turkish",
        ("Her zaman Türkçe yanıt veren yardımsever bir asistansın.",),
        "Aşağıdaki metni Türkçeye çevir:",
        "Aşağıdaki metni İngilizceye çevir:",
        "Aşağıdaki metni devam ettir:",
    ),
    "ar": Lang(
        "Arabic",
        ("أنت مساعد مفيد يجيب دائمًا باللغة العربية.",),
        "ترجم النص التالي إلى العربية:",
        "ترجم النص التالي إلى الإنجليزية:",
        "أكمل النص التالي:",
    ),
    "he": Lang(
        "Hebrew",
        ("אתה עוזר מועיל שתמיד עונה בעברית.",),
        "תרגם את הטקסט הבא לעברית:",
        "תרגם את הטקסט הבא לאנגלית:",
        "המשך את הטקסט הבא:",
    ),
    "hi": Lang(
        "Hindi",
        ("आप एक सहायक सहायक हैं जो हमेशा हिंदी में उत्तर देते हैं।",),
        "निम्नलिखित पाठ का हिंदी में अनुवाद करें:",
        "निम्नलिखित पाठ का अंग्रेज़ी में अनुवाद करें:",
        "निम्नलिखित पाठ को आगे बढ़ाएँ:",
    ),
    "zh": Lang(
        "Chinese",
        ("你是一个乐于助人的助手，总是用中文回答。",),
        "请将以下文本翻译成中文：",
        "请将以下文本翻译成英文：",
        "请继续写下面的文本：",
    ),
    "ja": Lang(
        "Japanese",
        ("あなたは常に日本語で答える親切なアシスタントです。",),
        "次の文章を日本語に翻訳してください：",
        "次の文章を英語に翻訳してください：",
        "次の文章の続きを書いてください：",
    ),
    "ko": Lang(
        "Korean",
        ("당신은 항상 한국어로 답하는 도움이 되는 어시스턴트입니다.",),
        "다음 글을 한국어로 번역하세요:",
        "다음 글을 영어로 번역하세요:",
        "다음 글을 이어서 쓰세요:",
    ),
    "vi": Lang(
        "Vietnamese",
        ("Bạn là một trợ lý hữu ích luôn trả lời bằng tiếng Việt.",),
        "Dịch đoạn văn sau sang tiếng Việt:",
        "Dịch đoạn văn sau sang tiếng Anh:",
        "Hãy viết tiếp đoạn văn sau:",
    ),
    "id": Lang(
        "Indonesian",
        ("Anda adalah asisten yang membantu dan selalu menjawab dalam bahasa Indonesia.",),
        "Terjemahkan teks berikut ke dalam bahasa Indonesia:",
        "Terjemahkan teks berikut ke dalam bahasa Inggris:",
        "Lanjutkan teks berikut:",
    ),
    "ca": Lang(
        "Catalan",
        ("Ets un assistent útil que sempre respon en català.",),
        "Tradueix el text següent al català:",
        "Tradueix el text següent a l'anglès:",
        "Continua el text següent:",
    ),
    "bg": Lang(
        "Bulgarian",
        ("Ти си полезен асистент, който винаги отговаря на български език.",),
        "Преведи следния текст на български език:",
        "Преведи следния текст на английски език:",
        "Продължи следния текст:",
    ),
}
ALIASES = {"no": "nb", "nn": "nb", "iw": "he", "zh-cn": "zh", "zh-tw": "zh", "pt-br": "pt"}


def lang(code: str) -> Lang | None:
    c = code.lower()
    return LANGS.get(ALIASES.get(c, c)) or LANGS.get(c.split("-")[0])


def english_name(code: str) -> str:
    """English name of a language code for prompts and reports ("de" -> "German").

    Our own table first, then lingua's list of 75 languages, else the code itself."""
    entry = lang(code)
    if entry:
        return entry.name_en
    from lingua import IsoCode639_1, Language

    iso = getattr(IsoCode639_1, code.split("-")[0].upper(), None)
    return Language.from_iso_code_639_1(iso).name.title() if iso is not None else code


def system_prompts(code: str) -> tuple[str, ...]:
    entry = lang(code)
    if entry is None:
        return (f"You are a helpful assistant who always answers in the language with code '{code}'.",)
    return entry.system


def phrase(code: str, key: str) -> str:
    """A task phrase in the target language, or its English fallback."""
    entry = lang(code)
    value = getattr(entry, key, "") if entry else ""
    if value:
        return value
    name = english_name(code)
    return {
        "to_target": f"Translate the following text into {name}:",
        "to_english": "Translate the following text into English:",
        "continue_text": "Continue the following text:",
    }[key]


def style_instruction(code: str, style: str, custom: dict[str, str] | None = None) -> str:
    """The conditioning instruction for a style tag, in the target language where we have it."""
    if custom and style in custom:
        return custom[style]
    entry = lang(code)
    if entry and style in entry.styles:
        return entry.styles[style]
    en = LANGS["en"].styles.get(style)
    return en or f"Answer in this style: {style}."


def known_styles(code: str) -> list[str]:
    entry = lang(code)
    return sorted(set(LANGS["en"].styles) | set(entry.styles if entry else {}))


def default_language(recipe=None, template_info: dict | None = None) -> str:
    """The language a run speaks: its recipe's, else the model folder's template info, else English
    (the language every phrase table falls back to)."""
    if recipe is not None and getattr(recipe, "language", None):
        return recipe.language
    return (template_info or {}).get("language") or "en"


# Short phrases the tools show a user, per language (English where the table has none).
GREETINGS = {
    "de": "Hallo! Wie geht es dir?", "en": "Hello! How are you?", "fr": "Bonjour ! Comment vas-tu ?",
    "es": "¡Hola! ¿Cómo estás?", "it": "Ciao! Come stai?", "pt": "Olá! Como você está?",
    "nl": "Hallo! Hoe gaat het met je?", "pl": "Cześć! Jak się masz?", "cs": "Ahoj! Jak se máš?",
    "sv": "Hej! Hur mår du?", "da": "Hej! Hvordan har du det?", "nb": "Hei! Hvordan har du det?",
    "fi": "Hei! Mitä kuuluu?", "hu": "Szia! Hogy vagy?", "ro": "Salut! Ce mai faci?",
    "el": "Γεια σου! Τι κάνεις;", "ru": "Привет! Как дела?", "uk": "Привіт! Як справи?",
    "tr": "Merhaba! Nasılsın?", "ar": "مرحبا! كيف حالك؟", "he": "שלום! מה שלומך?",
    "hi": "नमस्ते! आप कैसे हैं?", "zh": "你好！你好吗？", "ja": "こんにちは！元気ですか？",
    "ko": "안녕하세요! 어떻게 지내세요?", "vi": "Xin chào! Bạn khỏe không?", "id": "Halo! Apa kabar?",
    "ca": "Hola! Com estàs?", "bg": "Здравей! Как си?",
}
# What the chat REPL shows before the user's turn ("you>"), in the run's language.
YOU = {
    "de": "du", "en": "you", "fr": "toi", "es": "tú", "it": "tu", "pt": "você", "nl": "jij", "pl": "ty",
    "cs": "ty", "sv": "du", "da": "du", "nb": "du", "fi": "sinä", "hu": "te", "ro": "tu", "el": "εσύ",
    "ru": "ты", "uk": "ти", "tr": "sen", "ca": "tu", "bg": "ти", "id": "kamu", "vi": "bạn",
}


def _table_key(code: str) -> str:
    c = code.lower()
    return ALIASES.get(c, c) if ALIASES.get(c, c) in LANGS else c.split("-")[0]


def greeting(code: str) -> str:
    """A short greeting question in the language (probe prompt for exports and smoke tests)."""
    return GREETINGS.get(_table_key(code), GREETINGS["en"])


def you_prompt(code: str) -> str:
    """The REPL prompt before the user's turn, e.g. `du> ` for German."""
    return f"{YOU.get(_table_key(code), YOU['en'])}> "
