"""Model catalogue: which MT model serves a language pair, and each family's language codes.

    python -c "from mothertongue.engines.catalogue import FAMILIES; print(FAMILIES['nllb'].model_for('en', 'de'))"

Families: `opus-mt` (Helsinki-NLP bilingual Marian models: `opus-mt-{src}-{tgt}`, then the
`opus-mt-tc-big-{src}-{tgt}` variants), `nllb` (NLLB-200, FLORES-200 codes such as deu_Latn),
`m2m100` (`__de__` tokens), `madlad` (T5 with a `<2de>` prefix on the source) and `mbart50`
(`de_DE` codes). A bilingual family knows only the pairs listed below (no hub is asked); any
pair can be pointed at a model of your own with `translate.models: {"en-de": path-or-id}`.
"""

from __future__ import annotations

from dataclasses import dataclass

from mothertongue.errors import RecipeError

# ISO 639-1 -> FLORES-200 (NLLB-200).
NLLB_CODES = {
    "af": "afr_Latn", "am": "amh_Ethi", "ar": "arb_Arab", "az": "azj_Latn", "be": "bel_Cyrl",
    "bg": "bul_Cyrl", "bn": "ben_Beng", "bs": "bos_Latn", "ca": "cat_Latn", "cs": "ces_Latn",
    "cy": "cym_Latn", "da": "dan_Latn", "de": "deu_Latn", "el": "ell_Grek", "en": "eng_Latn",
    "eo": "epo_Latn", "es": "spa_Latn", "et": "est_Latn", "eu": "eus_Latn", "fa": "pes_Arab",
    "fi": "fin_Latn", "fr": "fra_Latn", "ga": "gle_Latn", "gl": "glg_Latn", "gu": "guj_Gujr",
    "ha": "hau_Latn", "he": "heb_Hebr", "hi": "hin_Deva", "hr": "hrv_Latn", "hu": "hun_Latn",
    "hy": "hye_Armn", "id": "ind_Latn", "ig": "ibo_Latn", "is": "isl_Latn", "it": "ita_Latn",
    "ja": "jpn_Jpan", "ka": "kat_Geor", "kk": "kaz_Cyrl", "km": "khm_Khmr", "kn": "kan_Knda",
    "ko": "kor_Hang", "lt": "lit_Latn", "lv": "lvs_Latn", "mk": "mkd_Cyrl", "ml": "mal_Mlym",
    "mn": "khk_Cyrl", "mr": "mar_Deva", "ms": "zsm_Latn", "my": "mya_Mymr", "nb": "nob_Latn",
    "ne": "npi_Deva", "nl": "nld_Latn", "no": "nob_Latn", "pa": "pan_Guru", "pl": "pol_Latn",
    "pt": "por_Latn", "ro": "ron_Latn", "ru": "rus_Cyrl", "sk": "slk_Latn", "sl": "slv_Latn",
    "so": "som_Latn", "sq": "als_Latn", "sr": "srp_Cyrl", "sv": "swe_Latn", "sw": "swh_Latn",
    "ta": "tam_Taml", "te": "tel_Telu", "th": "tha_Thai", "tl": "tgl_Latn", "tr": "tur_Latn",
    "uk": "ukr_Cyrl", "ur": "urd_Arab", "uz": "uzn_Latn", "vi": "vie_Latn", "xh": "xho_Latn",
    "yo": "yor_Latn", "zh": "zho_Hans", "zu": "zul_Latn",
}  # fmt: skip

# mBART-50 many-to-many.
MBART50_CODES = {
    "ar": "ar_AR", "cs": "cs_CZ", "de": "de_DE", "en": "en_XX", "es": "es_XX", "et": "et_EE",
    "fi": "fi_FI", "fr": "fr_XX", "gu": "gu_IN", "hi": "hi_IN", "it": "it_IT", "ja": "ja_XX",
    "kk": "kk_KZ", "ko": "ko_KR", "lt": "lt_LT", "lv": "lv_LV", "my": "my_MM", "ne": "ne_NP",
    "nl": "nl_XX", "ro": "ro_RO", "ru": "ru_RU", "si": "si_LK", "tr": "tr_TR", "vi": "vi_VN",
    "zh": "zh_CN", "af": "af_ZA", "az": "az_AZ", "bn": "bn_IN", "fa": "fa_IR", "he": "he_IL",
    "hr": "hr_HR", "id": "id_ID", "ka": "ka_GE", "km": "km_KH", "mk": "mk_MK", "ml": "ml_IN",
    "mn": "mn_MN", "mr": "mr_IN", "pl": "pl_PL", "ps": "ps_AF", "pt": "pt_XX", "sv": "sv_SE",
    "sw": "sw_KE", "ta": "ta_IN", "te": "te_IN", "th": "th_TH", "tl": "tl_XX", "uk": "uk_UA",
    "ur": "ur_PK", "xh": "xh_ZA", "gl": "gl_ES", "sl": "sl_SI",
}  # fmt: skip

# M2M100 (418M / 1.2B): ISO codes, used as `__xx__` tokens.
M2M100_LANGS = frozenset(
    "af am ar ast be bg bn br bs ca ceb cs cy da de el en es et fa ff fi fr fy ga gd gl gu ha he "
    "hi hr ht hu hy id ig ilo is it ja jv ka kk km kn ko lb lg ln lo lt lv mg mk ml mn mr ms my "
    "ne nl no ns oc or pa pl ps pt ro ru sd si sk sl so sq sr ss su sv sw ta th tl tn tr uk ur uz "
    "vi wo xh yi yo zh zu".split()
)

# Helsinki-NLP bilingual models known to exist (no hub is asked at planning time).
OPUS_MT_PAIRS = frozenset(
    tuple(p.split("-"))
    for p in (
        "en-de de-en en-fr fr-en en-es es-en en-it it-en en-nl nl-en en-ru ru-en en-zh zh-en "
        "en-ar ar-en ja-en en-sv sv-en en-fi fi-en en-da da-en en-cs cs-en en-ro ro-en en-hu hu-en "
        "en-uk uk-en en-bg bg-en en-ca ca-en en-et et-en en-hi hi-en en-id id-en en-vi vi-en ko-en "
        "pl-en tr-en de-fr fr-de de-es es-de fr-es es-fr it-fr fr-ru ru-fr de-nl nl-fr"
    ).split()
)
OPUS_MT_TC_BIG_PAIRS = frozenset(
    tuple(p.split("-")) for p in "en-pt pt-en en-tr en-pl en-ko en-el el-en en-he he-en".split()
)


@dataclass(frozen=True)
class Family:
    name: str
    default_model: str | None  # multilingual families: one model for every pair

    def supports(self, lang: str) -> bool:
        if self.name == "nllb":
            return lang in NLLB_CODES
        if self.name == "mbart50":
            return lang in MBART50_CODES
        if self.name == "m2m100":
            return lang in M2M100_LANGS
        if self.name == "madlad":  # 400+ languages, ISO codes; anything shaped like one
            return lang.isalpha() and 2 <= len(lang) <= 3
        return True  # opus-mt / plain: bilingual models, no codes

    def model_for(self, src: str, tgt: str) -> str | None:
        if self.name == "opus-mt":
            if (src, tgt) in OPUS_MT_PAIRS:
                return f"Helsinki-NLP/opus-mt-{src}-{tgt}"
            if (src, tgt) in OPUS_MT_TC_BIG_PAIRS:
                return f"Helsinki-NLP/opus-mt-tc-big-{src}-{tgt}"
            return None
        if self.default_model and self.supports(src) and self.supports(tgt):
            return self.default_model
        return None

    def code(self, lang: str) -> str | None:
        """The token/code this family uses for a language (None: the family needs none)."""
        if not self.supports(lang):
            known = {"nllb": NLLB_CODES, "mbart50": MBART50_CODES, "m2m100": M2M100_LANGS}.get(self.name, ())
            raise RecipeError(
                f"{self.name} models have no code for language {lang!r} (from `language`, translate.source_lang "
                f"or the data); known: {', '.join(sorted(known))}"
            )
        if self.name == "nllb":
            return NLLB_CODES[lang]
        if self.name == "mbart50":
            return MBART50_CODES[lang]
        if self.name == "m2m100":
            return f"__{lang}__"
        if self.name == "madlad":
            return f"<2{lang}>"
        return None


FAMILIES = {
    "opus-mt": Family("opus-mt", None),
    "nllb": Family("nllb", "facebook/nllb-200-distilled-600M"),
    "m2m100": Family("m2m100", "facebook/m2m100_418M"),
    "madlad": Family("madlad", "google/madlad400-3b-mt"),
    "mbart50": Family("mbart50", "facebook/mbart-large-50-many-to-many-mmt"),
    "plain": Family("plain", None),  # a model of your own with no language codes (Marian-like)
}


def family_of(model: str, model_type: str | None = None, tokenizer_class: str | None = None) -> str:
    """Guess a model's family from its name, config model_type and tokenizer class."""
    low = model.lower()
    tok = (tokenizer_class or "").lower()
    if "nllb" in low or "nllb" in tok:
        return "nllb"
    if "madlad" in low:
        return "madlad"
    if "mbart" in low or model_type == "mbart" or "mbart" in tok:
        return "mbart50"
    if "m2m" in low or model_type == "m2m_100":
        return "m2m100"
    if "opus-mt" in low:
        return "opus-mt"
    return "plain"


@dataclass(frozen=True)
class Leg:
    src: str
    tgt: str
    model: str


def direct_model(src: str, tgt: str, family: str, model: str | None, models: dict[str, str]) -> str | None:
    """The model for a direct src->tgt translation, or None when the catalogue has none."""
    if f"{src}-{tgt}" in models:
        return models[f"{src}-{tgt}"]
    if model:
        return model
    return FAMILIES[family].model_for(src, tgt)


def route(src: str, tgt: str, family: str, model: str | None, models: dict[str, str], pivot: str = "en") -> list[Leg] | None:
    """Legs that translate src into tgt: [] (same language), one direct leg, two via the pivot, or None."""
    if src == tgt:
        return []
    m = direct_model(src, tgt, family, model, models)
    if m:
        return [Leg(src, tgt, m)]
    if pivot in (src, tgt):
        return None
    a = direct_model(src, pivot, family, model, models)
    b = direct_model(pivot, tgt, family, model, models)
    if a and b:
        return [Leg(src, pivot, a), Leg(pivot, tgt, b)]
    return None
