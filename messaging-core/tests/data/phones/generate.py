#!/usr/bin/env python3
"""Generates the phone-number agreement corpus, labelled by libphonenumber's Python port.

Usage (from the repository root):

    pip install 'phonenumbers>=9,<10'
    python3 messaging-core/tests/data/phones/generate.py > messaging-core/tests/data/phones/corpus.jsonl

The output is deterministic for a given `phonenumbers` version (the random generator is seeded).
Each line after the header is a JSON array `[input, e164, tag]`: `e164` is the E.164 form when the
oracle (`phonenumbers.parse(input, "RU")` then `is_valid_number`) finds a valid number, else "".
`tag` names the family the input was generated from (`ru/...`, `intl/...`, `paste/...`, `ext/...`,
`letters/...`, `garbage/...`). Non-printing characters are written as JSON `\\uXXXX` escapes so that
the file stays readable.
"""

import json
import random
import sys
import unicodedata

import phonenumbers as pn
from phonenumbers import PhoneNumberFormat as F
from phonenumbers import PhoneNumberType as T

RNG = random.Random(16)
ROWS = []
SEEN = set()


def oracle(s):
    try:
        n = pn.parse(s, "RU")
    except pn.NumberParseException:
        return ""
    if not pn.is_valid_number(n):
        return ""
    return pn.format_number(n, F.E164)


def add(s, tag):
    if s in SEEN:
        return
    SEEN.add(s)
    ROWS.append((s, oracle(s), tag))


def mutate(digits, k):
    """Replaces the last k digits at random."""
    k = min(k, len(digits) - 1)
    return digits[: len(digits) - k] + "".join(RNG.choice("0123456789") for _ in range(k))


# ---------------------------------------------------------------- Russian forms
RU_MOBILE_PREFIXES = [f"9{d:02d}" for d in range(0, 100)]
RU_AREAS = ["495", "499", "812", "343", "383", "843", "861", "863", "846", "473", "351",
            "391", "4212", "3452", "8422", "4012", "831", "342", "347", "423", "8172", "3412"]
KZ_PREFIXES = ["701", "702", "705", "707", "747", "771", "775", "778", "727", "7172"]


def ru_forms(nat):
    """Every common way to write a ten-digit +7 national number."""
    a, b, c, d = nat[:3], nat[3:6], nat[6:8], nat[8:]
    a4, b4 = nat[:4], nat[4:6]
    return [
        f"+7 {a} {b}-{c}-{d}", f"+7 ({a}) {b}-{c}-{d}", f"+7{nat}", f"8 ({a}) {b}-{c}-{d}",
        f"8{nat}", f"7{nat}", nat, f"8-{a}-{b}-{c}-{d}", f"+7-{a}-{b}-{c}{d}",
        f"8 {a} {b} {c} {d}", f"+7 {a} {b} {c} {d}", f"8({a}){b}-{c}-{d}", f"+7.{a}.{b}.{c}.{d}",
        f"8 {a} {b}{c}{d}", f"7 ({a}) {b} {c} {d}", f"+7 ({a4}) {b4}-{c}-{d}", f"8 ({a4}) {b4}-{c}-{d}",
        f"+7({a}){b}{c}{d}", f"({a}) {b}-{c}-{d}", f"{a} {b} {c} {d}", f"+ 7 {a} {b} {c} {d}",
        f"8 {a} {b}-{c}{d}", f"+7 {a} {b}{c}{d}", f"8 ({a}) {b}{c}{d}",
    ]


def ru_numbers():
    out = []
    for pre in RU_MOBILE_PREFIXES:
        for _ in range(2):
            out.append(("ru/mobile", pre + "".join(RNG.choice("0123456789") for _ in range(7))))
    for area in RU_AREAS:
        for _ in range(3):
            out.append(("ru/landline", area + "".join(RNG.choice("0123456789") for _ in range(10 - len(area)))))
    for pre in ["800", "800", "800", "804", "809", "803"]:
        out.append(("ru/tollfree", pre + "".join(RNG.choice("0123456789") for _ in range(7))))
    for pre in KZ_PREFIXES:
        out.append(("ru/kz", pre + "".join(RNG.choice("0123456789") for _ in range(10 - len(pre)))))
    for _ in range(40):  # any ten digits, many of them unassigned
        out.append(("ru/random", "".join(RNG.choice("0123456789") for _ in range(10))))
    return out


for tag, nat in ru_numbers():
    forms = ru_forms(nat)
    for f in RNG.sample(forms, 6):
        add(f, tag)

# wrong lengths of Russian-looking numbers
for _ in range(120):
    n = RNG.choice([8, 9, 11, 12, 13])
    digits = "9" + "".join(RNG.choice("0123456789") for _ in range(n - 1))
    add(RNG.choice(["8", "+7", "7", "", "8 "]) + digits, "ru/length")

# ---------------------------------------------------------------- international
REGIONS = {
    "cis": ["KZ", "BY", "UA", "UZ", "KG", "TJ", "AM", "AZ", "GE", "MD", "TM"],
    "europe": ["DE", "FR", "GB", "IT", "ES", "PL", "NL", "SE", "FI", "CH", "AT", "CZ", "TR", "PT",
               "GR", "RS", "LV", "LT", "EE", "BE", "NO", "DK", "IE", "HU", "RO", "BG", "CY", "IS"],
    "asia": ["CN", "IN", "JP", "KR", "VN", "TH", "ID", "AE", "IL", "SG", "HK", "MY", "PH", "IR",
             "SA", "PK", "BD", "MN", "QA", "TW", "LK"],
    "americas": ["US", "CA", "MX", "BR", "AR", "CL", "CO", "PE", "VE", "EC", "CU", "DO", "PR", "UY"],
    "other": ["AU", "NZ", "ZA", "EG", "NG", "KE", "MA", "ET", "TN"],
}
TYPES = [(T.MOBILE, "mobile"), (T.FIXED_LINE, "landline"), (T.TOLL_FREE, "tollfree"),
         (T.PREMIUM_RATE, "premium"), (T.VOIP, "voip"), (T.UAN, "uan"),
         (T.SHARED_COST, "shared"), (T.PERSONAL_NUMBER, "personal")]


def intl_forms(num):
    e164 = pn.format_number(num, F.E164)
    intl = pn.format_number(num, F.INTERNATIONAL)
    cc = str(num.country_code)
    nsn = pn.national_significant_number(num)
    return [
        ("e164", e164), ("intl", intl), ("intl", intl), ("dashes", intl.replace(" ", "-")),
        ("dots", intl.replace(" ", ".")), ("nospace", "+" + cc + " " + nsn),
        ("paren", f"+{cc} ({nsn[:3]}) {nsn[3:]}"), ("rfc3966", pn.format_number(num, F.RFC3966)),
        ("digits", cc + nsn), ("810", f"8 10 {cc} {nsn}"), ("00", f"00{cc}{nsn}"),
        ("national", pn.format_number(num, F.NATIONAL)),
    ]


FORM_WEIGHTS = {"e164": 3, "intl": 4, "dashes": 2, "dots": 1, "nospace": 2, "paren": 1,
                "rfc3966": 1, "digits": 1, "810": 1, "00": 1, "national": 2}

for group, regions in REGIONS.items():
    for region in regions:
        for typ, tname in TYPES:
            ex = pn.example_number_for_type(region, typ)
            if ex is None:
                continue
            nsn = pn.national_significant_number(ex)
            count = 6 if tname in ("mobile", "landline") else 2
            for i in range(count):
                digits = nsn if i == 0 else mutate(nsn, RNG.randint(1, 4))
                num = pn.PhoneNumber(country_code=ex.country_code, national_number=int(digits),
                                     italian_leading_zero=ex.italian_leading_zero or None,
                                     number_of_leading_zeros=ex.number_of_leading_zeros)
                forms = intl_forms(num)
                weights = [FORM_WEIGHTS[f] for f, _ in forms]
                for form, s in RNG.choices(forms, weights, k=3):
                    add(s, f"intl/{group}/{tname}/{form}")
        # national parts starting with 8 (the Russian trunk prefix), valid or not
        ex = pn.example_number_for_type(region, T.FIXED_LINE) or pn.example_number(region)
        cc = ex.country_code
        length = len(pn.national_significant_number(ex))
        for _ in range(4):
            digits = "8" + "".join(RNG.choice("0123456789") for _ in range(length - 1))
            add(RNG.choice([f"+{cc}{digits}", f"+{cc} {digits[:2]} {digits[2:]}", f"+{cc} {digits[:3]} {digits[3:]}"]),
                f"intl/{group}/eight")

# the numbers from the issue and their neighbours
for s in ["+49 89 2970906", "+86 871 6345 6789", "+1 888 452 1505", "+49 89 29709060",
          "+1 800 555 0199", "+1 877 555 0100", "+44 800 890 567", "+39 06 6982 1234",
          "+39 02 1234 5678", "+33 8 00 12 34 56", "+7 800 100-00-00", "+375 29 123-45-67",
          "+380 44 123 4567", "+998 90 123 45 67", "+86 10 8888 8888", "+81 3-1234-5678"]:
    add(s, "intl/issue")

# ---------------------------------------------------------------- pasted forms
DASHES = ["\u2010", "\u2011", "\u2012", "\u2013", "\u2014", "\u2015", "\u2212", "\ufe63", "\uff0d"]
SPACES = ["\u00a0", "\u202f", "\u2009", "\u2007", "\u3000", "\t", "  "]
INVISIBLE = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u200e", "\u200f", "\u00ad"]
BIDI_WRAP = [("\u200e", ""), ("\u200f", ""), ("\u202a", "\u202c"), ("\u202b", "\u202c"),
             ("\u2066", "\u2069"), ("\u2068", "\u2069"), ("\u200e", "\u200e"), ("\ufeff", "")]
TRAILING = [".", ",", ";", ":", "!", "?", ")", "…", ".)", "\u200b", "\u00a0", " —", "»"]
LABELS = ["Тел: ", "Тел.: ", "тел. ", "Телефон: ", "телефон ", "Моб.: ", "моб. ", "т. ", "Т: ",
          "tel:", "tel: ", "Tel. ", "Tel: ", "TEL:", "Phone: ", "phone: ", "Mob: ", "Mobile: ", "Ph: ",
          "☎ ", "📞 ", "тел/факс: ", "WhatsApp: "]
FULLWIDTH = {c: chr(0xFF10 + int(c)) for c in "0123456789"}
ARABIC_INDIC = {c: chr(0x0660 + int(c)) for c in "0123456789"}


def valid_bases():
    return [(s, tag) for s, e, tag in ROWS if e and (tag.startswith("ru/") or "/intl" in tag or "/e164" in tag or "/dashes" in tag)]


BASES = valid_bases()


def decorate(s, kind):
    if kind == "dash":
        d = RNG.choice(DASHES)
        s = s.replace("-", d) if "-" in s else s.replace(" ", d)
    elif kind == "space":
        sp = RNG.choice(SPACES)
        s = s.replace(" ", sp)
    elif kind == "invisible":
        ch = RNG.choice(INVISIBLE)
        i = RNG.randint(1, len(s) - 1)
        s = s[:i] + ch + s[i:]
    elif kind == "bidi":
        a, b = RNG.choice(BIDI_WRAP)
        s = a + s + b
    elif kind == "trailing":
        s = s + RNG.choice(TRAILING)
    elif kind == "label":
        s = RNG.choice(LABELS) + s
    elif kind == "fullwidth":
        s = "".join(FULLWIDTH.get(c, c) for c in s).replace("+", RNG.choice(["+", "\uff0b"]))
        if RNG.random() < 0.5:
            s = s.replace("-", "\uff0d").replace(" ", "\u3000")
    elif kind == "arabic":
        s = "".join(ARABIC_INDIC.get(c, c) for c in s)
    elif kind == "wrapped":
        s = RNG.choice(["(", "[", "«", "\"", "'", " ", "\n"]) + s + RNG.choice([")", "]", "»", "\"", "'", " ", "\n"])
    elif kind == "combo":
        for k in RNG.sample(["dash", "space", "invisible", "bidi", "trailing", "label"], 3):
            s = decorate(s, k)
    return s


KINDS = {"dash": 250, "space": 150, "invisible": 180, "bidi": 120, "trailing": 200, "label": 220,
         "fullwidth": 120, "arabic": 20, "wrapped": 60, "combo": 200}
for kind, n in KINDS.items():
    for _ in range(n):
        base, _tag = RNG.choice(BASES)
        add(decorate(base, kind), f"paste/{kind}")
# the forms from the issue
for s in ["8 903 600–91–96", "8 903 600\u201191\u201196", "+7 903 600-91-96.", "\u200e+7 903 600 91 96\u200f",
          "８ ９０３ ６００ ９１ ９６", "+7\u00a0903\u00a0600\u201191\u201196", "Тел: 8 (903) 600-91-96",
          "tel:+79036009196", "\u202a+7 903 600-91-96\u202c"]:
    add(s, "paste/issue")

# ---------------------------------------------------------------- extensions
EXTS = [" доб. {}", " доб.{}", " доб {}", " ext. {}", " ext {}", " x{}", " x {}", " #{}", ";ext={}",
        " extn. {}", " доп. {}", ", доб. {}", " (доб. {})"]
for _ in range(220):
    base, _tag = RNG.choice(BASES)
    ext = str(RNG.randint(1, 99999))
    add(base + RNG.choice(EXTS).format(ext), "ext")

# ---------------------------------------------------------------- letters
VANITY = ["1-800-FLOWERS", "+1 800 FLOWERS", "1 800 GOT JUNK", "+1-888-NEW-CARS", "8 800 TAXI 123",
          "+44 800 CALL NOW", "+7 800 ABC-DE-FG", "1-800-MY-APPLE"]
for s in VANITY:
    add(s, "letters/vanity")
for _ in range(200):
    base, _tag = RNG.choice(BASES)
    kind = RNG.random()
    if kind < 0.3:  # a stray letter inside
        i = RNG.randint(1, len(base) - 1)
        s = base[:i] + RNG.choice("abcxyzабвгдOoIlЗз") + base[i:]
    elif kind < 0.5:  # O for 0, l for 1, З for 3
        s = base.replace("0", "O", 1) if "0" in base else base.replace("1", "l", 1)
    elif kind < 0.75:  # words around the number
        s = RNG.choice(["звоните ", "call me at ", "мой номер ", "номер: ", "phone number "]) + base
    else:
        s = base + RNG.choice([" Иван", " (мама)", " — офис", " WhatsApp", " call after 6", " abc"])
    add(s, "letters/stray")

# ---------------------------------------------------------------- garbage
def rand_digits(n):
    return "".join(RNG.choice("0123456789") for _ in range(n))


for n in range(0, 8):
    for _ in range(12):
        add(RNG.choice(["", "+", "8", "+7", "+7 "]) + rand_digits(n), "garbage/short")
for _ in range(120):
    n = RNG.randint(16, 40)
    add(RNG.choice(["", "+", "8", "+7"]) + rand_digits(n), "garbage/long")
SYMBOLS = "0123456789+-() ./*#,;:_=!?@abcxyzабв\u00a0\u2013"
for _ in range(250):
    add("".join(RNG.choice(SYMBOLS) for _ in range(RNG.randint(1, 30))), "garbage/symbols")
for s in ["", " ", "+", "++", "++79123456789", "+-79123456789", "+7", "8", "()", "--", "+0 123 456 789",
          "+999 123 456 789", "+800 1234 5678", "+808 1234 5678", "+888 1234 5678", "+979 123456789",
          "12.05.2024", "2024-05-12", "192.168.1.1", "1/2", "3.14159", "N/A", "нет", "—", "-1",
          "+7 (912) 345-67-89 +7 (912) 345-67-80", "89123456789, 89123456780", "😀", "+7 912 😀 345 67 89",
          "\u0000", "+7\u0000 912 345 67 89", "tel:+7;phone-context=x", "tel:", "tel:;ext=1",
          "+79123456789" * 3, "8" * 64, "+" + "7" * 100, "(((", ")))8 912 345 67 89",
          "0", "00", "000", "0000000000", "1111111111", "+7 000 000 00 00", "+7 999 999 99 99"]:
    add(s, "garbage/misc")
for _ in range(150):  # random +cc numbers of random length
    add("+" + rand_digits(RNG.randint(1, 3)) + " " + rand_digits(RNG.randint(4, 12)), "garbage/cc")

# ---------------------------------------------------------------- output
def escape(s):
    out = []
    for ch in s:
        cat = unicodedata.category(ch)
        if cat[0] in "CZ" and ch != " ":
            out.append("\\u%04x" % ord(ch) if ord(ch) < 0x10000 else
                       "".join("\\u%04x" % u for u in _surrogates(ord(ch))))
        elif ch in "\"\\":
            out.append("\\" + ch)
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _surrogates(cp):
    cp -= 0x10000
    return (0xD800 + (cp >> 10), 0xDC00 + (cp & 0x3FF))


w = sys.stdout
w.write(json.dumps({"oracle": "phonenumbers", "version": pn.__version__, "region": "RU",
                    "rows": len(ROWS), "format": "[input, e164 or \"\" when not valid, tag]"}) + "\n")
for s, e, tag in ROWS:
    w.write(f"[{escape(s)},{json.dumps(e)},{json.dumps(tag)}]\n")
