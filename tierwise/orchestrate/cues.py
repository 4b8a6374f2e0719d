"""Phrases that suggest a tool: prior knowledge the learned planner starts from.

A few hundred training requests are too few to learn that "read it aloud" means speech
synthesis or that "what is said in" means transcription, so each tool has a short list of
patterns, written here in our own words from what the tool does. They are features, not
rules: the planner learns how much each pattern is worth, and where in the request a
tool's patterns first match tells it the order of the steps.

Patterns are matched on the lower-cased request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_COLOURS = r"(red|blue|green|yellow|black|white|purple|pink|orange|gr[ae]y|golden|brown)"
_LANGUAGES = (
    r"(french|spanish|german|english|chinese|japanese|italian|portuguese|russian|arabic|"
    r"korean|hindi|dutch|swedish|greek|turkish|polish|mandarin)"
)
_PICTURE = r"(image|photo|picture|photograph|snapshot|pic)"

CUES: dict[str, tuple[str, ...]] = {
    "Token Classification": (
        r"named[- ]entit",
        r"\bentit(y|ies)\b",
        r"parts?[- ]of[- ]speech",
        r"\btoken",
        r"\btag(s|ging|ged)?\b",
        r"\bkey ?(words?|terms?|elements?|details?|names?)\b",
        r"\b(people|persons|names|places|locations|organi[sz]ations|dates)\b",
        r"\bgrammatical",
    ),
    "Translation": (
        r"translat",
        rf"\b(in|into|to) {_LANGUAGES}\b",
        r"\blanguage",
        _LANGUAGES,
    ),
    "Summarization": (
        r"summar",
        r"\bconcise",
        r"\bbrief(ly)?\b",
        r"\bshort(en|er)\b",
        r"\bcondens",
        r"\bmain (points?|ideas?|takeaways?)",
        r"\bgist\b",
        r"\bkey points",
        r"\bboil",
        r"\bsynopsis",
        r"\boverview",
    ),
    "Question Answering": (
        r"\banswer",
        r"\bquestion",
        r"\?['\"]",
        r"\bbased on (the|this|that|my) (text|article|passage|paragraph|summary|information)",
        r"\bfind out\b",
        r"\bfigure out\b",
        r"\bquery",
    ),
    "Conversational": (
        r"\bconvers",
        r"\bchat",
        r"\bdialog",
        r"\bdiscuss",
        r"\btalk",
        r"\brespon[sd]",
        r"\brepl(y|ies)",
        r"\bengag",
        r"\badvice\b",
        r"\bsuggest",
    ),
    "Text Generation": (
        r"\bgenerat\w* (a |an |some |the )?(\w+ )?(text|story|description|paragraph|poem|"
        r"sentence|content|article|narrative|caption|script|essay|slogan)",
        r"\bwrit(e|ing)\b",
        r"\bcompos",
        r"\bdescri(be|ption)",
        r"\bcreative",
        r"\bstory",
        r"\bexpand",
        r"\belaborat",
        r"\bcontinu",
        r"\bin (one|a) sentence",
        r"\btell me\b",
    ),
    "Sentence Similarity": (
        r"\bsimilar",
        r"\bcompar",
        r"\bmatch",
        r"\bclose(ly|ness)?\b",
        r"\bsame meaning",
        r"\bresembl",
        r"\balign",
        r"\baccura(te|cy)\b",
    ),
    "Tabular Classification": (
        r"\btabl",
        r"\btabular",
        r"\brows?\b",
        r"\bcolumns?\b",
        r"\bspreadsheet",
        r"\bchart",
        r"\bdata\b",
    ),
    "Object Detection": (
        r"\bdetect",
        r"\bobjects?\b",
        r"\blocat",
        r"\bbounding",
        r"\bitems?\b",
        r"\bcount",
        r"\bspot",
        r"\bwhat('s| is| are) (in|present)",
    ),
    "Image Classification": (
        r"\bclassif",
        r"\bcategor",
        r"\bwhat (kind|type|sort|class)",
        r"\blabel",
        r"\bidentif",
        r"\brecogni",
        r"\bwhat('s| is) in\b",
    ),
    "Image-to-Image": (
        r"\btransform",
        r"\bstyle",
        r"\benhanc",
        r"\brestor",
        r"\bimprov",
        r"\bquality",
        r"\bsharpen",
        r"\bnight",
        r"\blook like",
        r"\bresolution",
        r"\bartistic",
        r"\bvintage",
    ),
    "Image-to-Text": (
        r"\bcaption",
        rf"\bdescri\w* (the |this |my |that |its )?({_PICTURE}|content|scene|objects?)",
        r"\bdescription",
        r"\bextract\w* (the |any |all )?(text|words|writing)",
        rf"\btext (from|in|on) (the|this|that|my) {_PICTURE}",
        r"\bread\w* (the )?(text|writing)",
        r"\bin words\b",
        r"\btextual",
        r"\bdescribes?\b",
    ),
    "Text-to-Image": (
        r"\b(generat|creat|produc|mak|design|render)\w* (an? |the |some )?(new |visual |fitting |"
        rf"relevant |\w+ )?({_PICTURE}|illustration|visual|artwork|graphic|poster|drawing)",
        r"\bdraw",
        r"\bvisuali",
        r"\bdepict",
        r"\billustrat",
        r"\bpaint",
        r"\bvisual representation",
    ),
    "Text-to-Video": (
        r"\bvideo",
        r"\banimat",
        r"\bclip\b",
        r"\bmovie",
        r"\bmp4\b",
        r"\bfilm",
    ),
    "Visual Question Answering": (
        r"\bcolou?r",
        rf"\bwhat (is|are)\b.{{0,40}}\b(in|on) (the|this|that|my) {_PICTURE}",
        r"\bhow many",
        rf"\bquestion\w* about (the|this|that|my|an?) {_PICTURE}",
        r"\bis there\b",
        r"\bare there\b",
        r"\bwearing",
        r"\bvisible",
        r"\bshown\b",
    ),
    "Document Question Answering": (
        r"\bdocument",
        r"\binvoice",
        r"\breceipt",
        r"\bform\b",
        r"\bletter\b",
        r"\bcontract",
        r"\bscann",
        r"\breport\b",
        r"\bpaper\b",
        r"\bpage\b",
        r"\bmenu\b",
        r"\bposter\b",
    ),
    "Image Segmentation": (
        r"\bsegment",
        r"\bseparat",
        r"\bisolat",
        r"\bregions?\b",
        r"\bmask",
        r"\bpartition",
        r"\boutlin",
        r"\bdistinct",
        r"\bparts\b",
        r"\bsections?\b",
        r"\bcomponents\b",
        r"\bboundar",
    ),
    "Depth Estimation": (
        r"\bdepth",
        r"\bdistance",
        r"\bhow far",
        r"\b3d\b",
        r"\bcloser\b",
        r"\bfarther\b",
        r"\bperspective",
        r"\bspatial",
    ),
    "Text-to-Speech": (
        r"\bspeech",
        r"\b(an? |into |to )(audio|sound)",
        r"\baudio (version|format|clip|narration|output|form)",
        r"\baloud",
        r"\bnarrat",
        r"\bvoice",
        r"\bspeak",
        r"\bspoken",
        r"\blisten",
        r"\bpronounc",
        r"\bvocal",
        r"\bverbal",
        r"\bread (it|this|that|them) (out|to me)",
    ),
    "Automatic Speech Recognition": (
        r"\btranscri",
        r"\bspeech[- ]to[- ]text",
        r"\bwhat (is|was|'s) (being )?(said|spoken)",
        r"\bwritten (text|form|words)",
        r"\binto text\b",
        r"\bwords\b",
        r"\bdictat",
        r"\brecord(ing|ed)\b",
    ),
    "Audio-to-Audio": (
        r"\benhanc\w* (the |its |my )?(audio|sound|speech|voice|recording)",
        r"\bnois",
        r"\bclean",
        r"\baudio quality",
        r"\bsound quality",
        r"\bclear(er)?\b",
        r"\bdenois",
        r"\bbackground",
        r"\bseparat\w* (the )?(speech|voice|vocals|sound)",
        r"\bimprove\w* (the )?(audio|sound)",
    ),
    "Audio Classification": (
        r"\bclassif\w* (the |this |that )?(audio|sound|recording|clip)",
        r"\bemotion",
        r"\bwhat (kind|type|sort) of (sound|audio|noise)",
        r"\bgenre",
        r"\bcommand",
        r"\bspeaker",
        r"\bsounds?\b",
        r"\bmood",
        r"\bfeeling",
    ),
    "Image Editing": (
        r"\bedit",
        r"\bchang",
        r"\bmodif",
        r"\balter",
        r"\badd(ing)?\b",
        r"\bremov",
        r"\breplac",
        rf"\bturn\w* (the |it |them )?.{{0,20}}\b{_COLOURS}",
        r"\badjust",
        r"\bmake (the|it)\b",
        r"\bmanipulat",
        r"\bhighlight",
    ),
}

_COMPILED = {tool: tuple(re.compile(p) for p in patterns) for tool, patterns in CUES.items()}


@dataclass(frozen=True)
class CueMatch:
    tool: str
    pattern: int  # index into CUES[tool]
    start: float  # where it matched, as a share of the request's length


def cue_matches(text: str) -> list[CueMatch]:
    """Every pattern's first match in ``text`` (a pattern counts once per request)."""
    low = text.lower()
    length = max(len(low), 1)
    out = []
    for tool, patterns in _COMPILED.items():
        for i, pattern in enumerate(patterns):
            m = pattern.search(low)
            if m is not None:
                out.append(CueMatch(tool, i, m.start() / length))
    return out


def cue_names() -> list[str]:
    """One feature name per pattern, in a fixed order."""
    return [f"{tool}#{i}" for tool, patterns in CUES.items() for i in range(len(patterns))]
