"""What a coding is, apart from where it is stored: a span of a source (exact character offsets
into the transcript text), a code, a coder, a time and an origin. The origin says how the coding
came to be; these are its values (an import names its file after ORIGIN_IMPORTED)."""

ORIGIN_SUGGESTION = "suggestion accepted"
ORIGIN_HAND = "hand-coded"
ORIGIN_IMPORTED = "imported from "
