"""Task families: problem sampling, prompt text, and a grader that works from text alone.

arithmetic  "What is 37 + 48?"  (+, -, x of small numbers)            checkable
counting    letters in a word, words in a sentence, items in a list   checkable
writing     "Write one sentence about the ocean that uses the word 'waves'."  quality-scored

grade(prompt, response) parses the prompt back into its problem, so the ranking used to build the
preference files and the --check validation both rest on the visible text only.
"""

import re

CATEGORIES = ("arithmetic", "counting", "writing")

# ---------------------------------------------------------------- arithmetic
ARITH_SYMBOL = {"+": "+", "-": "-", "x": "x"}
ARITH_WORD = {"+": "plus", "-": "minus", "x": "times"}
ARITH_PROMPTS = ("What is {a} {s} {b}?", "Compute {a} {w} {b}.", "Calculate {a} {s} {b}.",
                 "What do you get from {a} {w} {b}?")
ARITH_RE = re.compile(r"(\d+) (\+|-|x|plus|minus|times) (\d+)")


def sample_arithmetic(rng):
    op = rng.choice(("+", "-", "x"))
    if op == "+":
        a, b = rng.randint(10, 99), rng.randint(10, 99)
    elif op == "-":
        a = rng.randint(20, 99)
        b = rng.randint(1, a)
    else:
        a, b = rng.randint(2, 12), rng.randint(2, 19)
    template = rng.randrange(len(ARITH_PROMPTS))
    return ("arithmetic", op, a, b, template)


def arith_value(op, a, b):
    return a + b if op == "+" else a - b if op == "-" else a * b


# ------------------------------------------------------------------ counting
WORDS = ("banana", "apple", "letter", "mississippi", "balloon", "coffee", "pepper", "committee",
         "bookkeeper", "happiness", "parallel", "tomato", "potato", "umbrella", "elephant",
         "giraffe", "kangaroo", "strawberry", "raspberry", "chocolate", "avocado", "cinnamon",
         "assessment", "possession", "engineer", "referee", "sunflower", "butterfly", "pineapple",
         "watermelon", "broccoli", "cucumber", "mountain", "notebook", "daffodil", "hippopotamus",
         "lollipop", "bubble", "puppy", "kitten", "rabbit", "mammal", "llama", "alphabet",
         "necessary", "occasion", "success", "address", "cassette", "grammar")
SENTENCE_WORDS = ("the", "cat", "dog", "sat", "ran", "on", "a", "mat", "big", "red", "ball",
                  "under", "tree", "little", "bird", "sang", "loudly", "today", "my", "friend",
                  "likes", "green", "tea", "and", "cake", "we", "walked", "home", "slowly")
ITEMS = ("apple", "pear", "plum", "grape", "lemon", "cherry", "mango", "peach", "fig", "kiwi",
         "carrot", "onion", "bean", "pepper", "radish", "cup", "plate", "fork", "spoon", "knife")
COUNT_PROMPTS = {
    "letter": ("How many times does the letter '{t}' appear in '{x}'?",
               "Count the letter '{t}' in the word '{x}'."),
    "words": ("How many words are in the sentence '{x}'?", "Count the words in '{x}'."),
    "items": ("How many items are in this list: {x}?", "Count the items: {x}."),
}
COUNT_RES = (
    ("letter", re.compile(r"letter '([a-z])' (?:appear )?in (?:the word )?'([a-z]+)'")),
    ("words", re.compile(r"(?:sentence|words in) '([a-z ]+)'")),
    ("items", re.compile(r"(?:this list|the items): ([a-z, ]+)[.?]$")),
)


def sample_counting(rng):
    kind = rng.choice(("letter", "words", "items"))
    if kind == "letter":
        word = rng.choice(WORDS)
        letter = rng.choice(word) if rng.random() < 0.9 else rng.choice("aeiourst")
        target, text = letter, word
    elif kind == "words":
        target, text = "", " ".join(rng.choice(SENTENCE_WORDS) for _ in range(rng.randint(3, 9)))
    else:
        target = ""
        text = ", ".join(rng.sample(ITEMS, rng.randint(2, 8)))
    return ("counting", kind, target, text, rng.randrange(2))


def count_value(kind, target, text):
    if kind == "letter":
        return text.count(target)
    return len(text.split(" ")) if kind == "words" else len(text.split(", "))


# ------------------------------------------------------------------- writing
# Word lists are disjoint across topics, so a content word names exactly one topic.
TOPICS = {
    "the ocean": ("waves tides shells fish sailors ships reefs", "deep blue salty vast calm stormy",
                  "crash roll shimmer swell splash"),
    "the forest": ("trees leaves owls ferns mushrooms deer branches",
                   "green tall shady ancient mossy wild", "rustle sway whisper grow creak"),
    "the city": ("streets cars towers buses crowds markets taxis",
                 "busy noisy crowded modern urban bright", "hum rush honk bustle gleam"),
    "the desert": ("dunes cacti lizards camels rocks sands scorpions",
                   "dry hot golden dusty barren endless", "scorch shift wither blaze stretch"),
    "the mountains": ("peaks cliffs glaciers goats trails summits eagles",
                      "steep rocky snowy high rugged icy", "tower loom soar climb echo"),
    "winter": ("snowflakes icicles sleds mittens scarves fireplaces blizzards",
               "cold frosty chilly frozen bleak wintry", "freeze sparkle settle crackle glisten"),
    "the garden": ("roses tulips bees worms daisies seeds hoses",
                   "fragrant colorful sunny lush blooming neat", "bloom buzz flourish sprout wilt"),
    "the kitchen": ("pots pans spoons ovens recipes onions kettles",
                    "warm spicy tasty clean cozy savory", "sizzle boil simmer stir steam"),
    "space": ("stars planets comets rockets astronauts moons galaxies",
              "dark infinite distant silent cosmic starry", "orbit twinkle spin launch float"),
    "the farm": ("cows tractors barns chickens pigs fields fences",
                 "rural muddy peaceful rustic fertile sleepy", "graze plow cluck moo harvest"),
    "music": ("songs drums guitars melodies pianos choirs notes",
              "loud soft rhythmic joyful gentle catchy", "play strum ring resound chime"),
    "the rain": ("puddles clouds umbrellas raindrops gutters storms boots",
                 "wet gray damp gloomy steady heavy", "pour drip patter trickle soak"),
    "school": ("teachers pupils desks books lessons pencils classrooms",
               "smart curious strict eager studious bored", "learn study read teach memorize"),
    "the night": ("bats lanterns shadows crickets dreams fireflies moonbeams",
                  "dim hushed velvet misty still drowsy", "flicker glow rest slumber chirp"),
    "sports": ("players balls goals teams fans referees stadiums",
               "fast strong fierce athletic tireless competitive", "run kick score cheer sprint"),
    "the river": ("boats bridges rapids otters pebbles currents reeds",
                  "clear winding cool swift murky narrow", "flow bend ripple meander gurgle"),
}
TOPIC_ORDER = tuple(TOPICS)
TOPIC_WORDS = {t: tuple(tuple(part.split()) for part in TOPICS[t]) for t in TOPIC_ORDER}  # (N, A, V)
WORD_TOPIC = {w: t for t in TOPIC_ORDER for part in TOPIC_WORDS[t] for w in part}
assert len(WORD_TOPIC) == sum(len(p) for t in TOPIC_ORDER for p in TOPIC_WORDS[t]), "topic overlap"
WRITE_PROMPTS = ("Write one sentence about {t} that uses the word '{w0}'.",
                 "Describe {t} in one sentence using the word '{w0}'.",
                 "Write one sentence about {t} that uses the words '{w0}' and '{w1}'.",
                 "Give me a short sentence about {t} with the words '{w0}' and '{w1}'.",
                 "Write a sentence about {t} using the word '{w0}'.",
                 "Compose one sentence about {t} that includes the word '{w0}'.",
                 "Write a sentence about {t} using the words '{w0}' and '{w1}'.",
                 "Compose one sentence about {t} that includes the words '{w0}' and '{w1}'.")
WRITE_RE = re.compile(r"(?:about|Describe) (.+?) (?:that uses|in one|with the|using the|that includes)")


def sample_writing(rng):
    topic = rng.choice(TOPIC_ORDER)
    template = rng.randrange(len(WRITE_PROMPTS))
    nouns, adjs, _ = TOPIC_WORDS[topic]
    if "{w1}" not in WRITE_PROMPTS[template]:
        words = (rng.choice(nouns + adjs),)
    else:  # one noun and one adjective, so both fit the sentence skeletons
        words = (rng.choice(nouns), rng.choice(adjs))
    return ("writing", topic, words, template)


# -------------------------------------------------------------------- shared
def sample_problem(rng, category):
    return {"arithmetic": sample_arithmetic, "counting": sample_counting,
            "writing": sample_writing}[category](rng)


def render_prompt(problem):
    if problem[0] == "arithmetic":
        _, op, a, b, template = problem
        return ARITH_PROMPTS[template].format(a=a, b=b, s=ARITH_SYMBOL[op], w=ARITH_WORD[op])
    if problem[0] == "counting":
        _, kind, target, text, template = problem
        return COUNT_PROMPTS[kind][template].format(t=target, x=text)
    _, topic, words, template = problem
    return WRITE_PROMPTS[template].format(t=topic, w0=words[0], w1=words[-1])


def truth(problem):
    """The correct integer of a checkable problem (None for writing)."""
    if problem[0] == "arithmetic":
        return arith_value(*problem[1:4])
    if problem[0] == "counting":
        return count_value(*problem[1:4])
    return None


def parse_prompt(prompt):
    """Inverse of render_prompt up to the template index: (category, truth | (topic, words))."""
    if prompt.startswith(("Write", "Describe", "Give", "Compose")):
        match = WRITE_RE.search(prompt)
        if not match or match.group(1) not in TOPICS:
            raise ValueError(f"unparseable writing prompt: {prompt!r}")
        return "writing", (match.group(1), tuple(re.findall(r"'([a-z]+)'", prompt)))
    for kind, pattern in COUNT_RES:
        match = pattern.search(prompt)
        if match:
            target, text = (match.group(1), match.group(2)) if kind == "letter" else ("", match.group(1))
            return "counting", count_value(kind, target, text)
    match = ARITH_RE.search(prompt)
    if not match:
        raise ValueError(f"unparseable prompt: {prompt!r}")
    op = {"plus": "+", "minus": "-", "times": "x"}.get(match.group(2), match.group(2))
    return "arithmetic", arith_value(op, int(match.group(1)), int(match.group(3)))


INT_RE = re.compile(r"-?\d+")
HEDGES = ("i think", "maybe", "probably", "i believe", "not sure")
FILLERS = ("sure!", "hope that helps", "lol", "ok so", "happy to help", "great question",
           "it is lovely")


def final_answer(response):
    """The last integer in a response (the answer every template states last), else None."""
    found = INT_RE.findall(response)
    return int(found[-1]) if found else None


def format_score(response):
    """Surface tidiness in [0, 1]: terminal punctuation, no hedging, no filler, shown work."""
    low = response.lower()
    score = 0.3 * (response.rstrip()[-1:] in (".", "!", "?"))
    score += 0.3 * (not any(h in low for h in HEDGES))
    score += 0.2 * (not any(f in low for f in FILLERS))
    score += 0.2 * ("=" in low or "spelled" in low or "one by one" in low)
    return round(score, 3)


def content_words(response):
    return [w for w in re.findall(r"[a-z]+", response.lower()) if w in WORD_TOPIC]


# A response that stops on one of these was cut off mid-sentence.
DANGLING = ("the", "a", "by", "near", "and", "are", "with", "quiet", "around", "past", "beside",
            "among", "that", "is", "it", "on", "most", "of")


def grade_writing(topic, required, response):
    words = content_words(response)
    hits = [w for w in words if WORD_TOPIC[w] == topic]
    on_topic = len(hits) / len(words) if words else 0.0
    present = sum(1 for w in required if w in words) / len(required)
    repeated = len(set(words)) < len(words)
    tail = re.findall(r"[a-z]+", response.lower())[-1:]
    ends = bool(tail) and tail[0] not in DANGLING
    # "Correct" is the analogue of a right answer: every content word is on the asked topic.
    # Quality then orders on-topic sentences: required words, no repetition, not cut off.
    correct = on_topic == 1.0 and len(words) >= 3
    quality = 0.5 * present + 0.25 * (not repeated) + 0.25 * ends
    return correct, round(quality, 3)


def grade(prompt, response):
    """(correct, quality): the ranking key; compare tuples, higher is better."""
    category, info = parse_prompt(prompt)
    if category == "writing":
        return grade_writing(info[0], info[1], response)
    return final_answer(response) == info, format_score(response)
