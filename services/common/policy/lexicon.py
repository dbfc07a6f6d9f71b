"""What the prompt check matches per concept (services.common.policy.concepts names them).

`TERMS`: words and phrases, compared with a prompt's normalised tokens (services.common.policy.
normalize): a phrase matches consecutive tokens, a word also its plural and, from six letters
on, one edit away (a misspelling) unless the token is a word in `NEAR_MISSES`. Kept to terms
that are unambiguous in a studio's prompts ("crack pipe", not "crack"; "smoking weed", not
"weed"): what a word alone cannot decide is left to the semantic match.

`EXEMPLARS`: short descriptions of each concept, encoded once by the model's own text encoder;
a prompt whose pooled states come close enough to one of them (the concept's calibrated
threshold) matches semantically. The test prompts of tests/policy_prompts/ are written apart
from these (its README says how).

Never sent to a client: a refusal names the concept only.
"""

from __future__ import annotations

TERMS: dict[str, tuple[str, ...]] = {
    "weapons": (
        "gun", "handgun", "pistol", "rifle", "shotgun", "revolver", "firearm", "machine gun", "submachine gun",
        "assault rifle", "sniper rifle", "ak47", "ak 47", "ar15", "ar 15", "uzi", "bazooka", "rocket launcher",
        "grenade", "bomb", "dynamite", "landmine", "missile", "ammunition", "bullets", "sword", "katana",
        "dagger", "knife", "switchblade", "machete", "battle axe", "war axe", "crossbow", "bow and arrow",
        "spear", "mace", "flail", "halberd", "weapon", "nunchucks", "brass knuckles", "flamethrower",
    ),
    "alcohol": (
        "beer", "wine", "whiskey", "whisky", "vodka", "rum", "gin", "tequila", "cocktail", "champagne", "sake",
        "ale", "lager", "liquor", "booze", "martini", "margarita", "brandy", "cognac", "bourbon", "mead",
        "beer mug", "wine glass", "brewery", "drunk", "hangover", "alcohol", "alcoholic", "shot glass", "absinthe",
    ),
    "tobacco": (
        "cigarette", "cigar", "cigarillo", "tobacco", "vape", "vaping", "ecigarette", "e cigarette", "hookah",
        "shisha", "smoking pipe", "tobacco pipe", "nicotine", "ashtray", "chewing tobacco", "smoking a cigarette",
    ),
    "gambling": (
        "casino", "poker", "roulette", "slot machine", "blackjack", "betting", "gamble", "gambling", "gambler",
        "lottery ticket", "poker chips", "bookmaker", "sportsbook", "baccarat", "craps table", "jackpot",
    ),
    "drugs": (
        "marijuana", "cannabis", "smoking weed", "weed leaf", "pot leaf", "bong", "drug dealer", "drugs",
        "ecstasy pills", "mdma", "lsd", "magic mushrooms", "psilocybin", "stoner", "narcotics", "joint of weed",
        "heroin", "cocaine", "meth", "methamphetamine", "fentanyl", "opium",
    ),
    "violence_gore": (
        "gore", "gory", "decapitated", "decapitation", "beheaded", "beheading", "dismembered", "dismemberment",
        "mutilated", "mutilation", "disemboweled", "disembowelled", "entrails", "severed head", "severed limbs",
        "torture", "tortured", "bloodbath", "massacre", "corpse", "mangled body", "bloody corpse", "guts spilling",
        "slaughtered", "murdered", "murder scene", "execution", "lynching", "impaled", "flayed", "cannibal",
    ),
    "hate_symbols": (
        "swastika", "nazi", "nazis", "neonazi", "neo nazi", "third reich", "hitler", "ss runes", "sig runes",
        "kkk", "ku klux klan", "klansman", "white power", "white supremacy", "white supremacist", "burning cross",
        "confederate flag", "heil", "totenkopf", "sonnenrad", "black sun symbol", "wolfsangel", "iron cross flag",
        "hate symbol", "racist symbol", "aryan",
    ),
    "sexual_content": (
        "nude", "nudes", "naked", "nudity", "porn", "porno", "pornographic", "pornography", "sex", "sexual",
        "sexy", "nsfw", "topless", "bottomless", "genitals", "genitalia", "penis", "vagina", "erotic", "erotica",
        "hentai", "xxx", "orgasm", "boobs", "breasts", "nipples", "stripper", "striptease", "fetish", "bdsm",
        "lewd", "onlyfans", "explicit", "intercourse", "masturbation", "undressed", "seductive pose",
    ),
    "self_harm": (
        "suicide", "suicidal", "self harm", "selfharm", "self injury", "cutting wrists", "slit wrists",
        "slitting wrists", "wrist cutting", "kill myself", "killing myself", "hang myself", "hanging himself",
        "hanging herself", "overdose", "pro ana", "proana", "thinspiration", "thinspo", "starving myself",
        "noose around neck", "end my life",
    ),
    "terrorism": (
        "terrorist", "terrorists", "terrorism", "terror attack", "suicide bomber", "suicide bombing",
        "suicide vest", "car bomb", "isis", "al qaeda", "alqaeda", "jihadist", "jihadi", "taliban", "hijacked plane",
        "mass shooting", "school shooting", "shooting spree", "bombing of", "hostage execution", "extremist attack",
    ),
    "hard_drug_use": (
        "heroin", "cocaine", "crack cocaine", "crack pipe", "smoking crack", "meth", "methamphetamine",
        "crystal meth", "meth pipe", "fentanyl", "shooting up", "injecting drugs", "snorting", "lines of coke",
        "snorting coke", "junkie", "drug addict", "overdosing", "needle in arm", "speedball", "freebasing",
    ),
    "real_persons": (
        "donald trump", "joe biden", "barack obama", "elon musk", "taylor swift", "vladimir putin",
        "kim jong un", "xi jinping", "beyonce", "tom cruise", "queen elizabeth", "king charles", "emma watson",
        "keanu reeves", "oprah winfrey", "kanye west", "mark zuckerberg", "bill gates", "pope francis",
        "narendra modi", "emmanuel macron", "angela merkel", "volodymyr zelensky", "lionel messi",
        "cristiano ronaldo", "rihanna", "brad pitt", "scarlett johansson",
    ),
    "trademarks": (
        "nike", "adidas", "coca cola", "cocacola", "pepsi", "mcdonalds", "starbucks", "apple logo",
        "mickey mouse", "pikachu", "pokemon", "super mario", "disney", "marvel", "spiderman", "spider man",
        "batman", "superman", "hello kitty", "lego", "ferrari", "gucci", "louis vuitton", "star wars",
        "darth vader", "sonic the hedgehog", "minecraft", "fortnite", "playstation", "nintendo", "hogwarts",
    ),
}

# Words one edit from a term that are not it (a misspelling match skips them).
NEAR_MISSES: frozenset[str] = frozenset({
    "heroine", "heroines", "heroic", "method", "meth", "metal", "nudge", "sextant", "sexton", "gunk", "sward",
    "swords", "cigar", "winery", "wines", "swine", "spine", "poke", "poker", "porno", "forn", "horn", "corn",
    "pistil", "pistols", "rifles", "nakes", "snake", "snakes", "baked", "naked", "naval", "nazir", "gored",
    "mace", "maze", "torte", "tortures", "murderer", "cannibals", "suicides", "terrorists", "isiss",
    "bombe", "combo", "tombs", "womb", "tomb", "bones", "bond", "beeper", "beery", "rummy", "gins",
    "genial", "general", "generals", "vagrant", "vaginal", "penic", "penne", "nipple", "breastplate",
    "breath", "bread", "brewer", "drunken", "dunk", "sexy", "sexes", "execute", "executive", "corpses",
    "lager", "layer", "wager", "eager", "gambit", "amble", "ramble", "bramble", "gamble", "nuder", "under",
    "codeine", "caffeine", "cocoa", "coco", "cocoanut", "coconut", "heroism", "herons", "meta",
    "metals", "mesh", "math", "moth", "cannabis", "cannoli", "gunboat", "guns", "gunner", "lego", "legos",
    "spider", "nikes", "marble", "marvels", "disc", "dismal",
})

EXEMPLARS: dict[str, tuple[str, ...]] = {
    "weapons": (
        "a gun", "a firearm pointed at someone", "a sword or knife as a weapon", "an explosive bomb",
        "soldiers shooting rifles", "a loaded pistol", "military weapons and ammunition",
    ),
    "alcohol": (
        "a glass of beer", "a bottle of wine", "alcoholic drinks at a bar", "people drinking liquor",
        "a drunk man holding a bottle", "cocktails and spirits",
    ),
    "tobacco": (
        "a lit cigarette", "a man smoking a cigar", "cigarette smoke and an ashtray", "a person vaping",
        "a pack of cigarettes", "smoking tobacco",
    ),
    "gambling": (
        "a casino with slot machines", "gambling chips on a poker table", "betting money on games of chance",
        "a roulette wheel", "a lottery jackpot win",
    ),
    "drugs": (
        "recreational drugs and pills", "a marijuana leaf", "smoking a joint", "illegal drugs for sale",
        "a drug dealer with bags of powder", "getting high on drugs",
    ),
    "violence_gore": (
        "graphic gore with blood and guts", "a mutilated dead body", "a person being tortured",
        "a severed head dripping blood", "a brutal murder scene", "people being slaughtered in a massacre",
        "ripped flesh and exposed organs", "a corpse covered in blood",
        "gouging out someone's eyes", "a body cut open with organs spilling", "cutting off a prisoner's ears",
        "a head blown apart with brains splattered", "a person skinned alive", "a chainsaw cutting a screaming person",
    ),
    "hate_symbols": (
        "a nazi swastika flag", "a white supremacist rally", "extremist hate symbols", "ku klux klan hoods",
        "neo nazi insignia", "a racist hate group banner", "the flag of the third reich",
        "a crowd of fascists doing the nazi salute", "a propaganda portrait of the nazi leader",
        "an antisemitic slur painted on a wall", "a racist slogan against black people",
        "a neo-nazi skinhead gang emblem", "hooded klan members burning a cross",
    ),
    "sexual_content": (
        "a naked woman", "a nude man", "explicit sexual intercourse", "pornographic image", "erotic nude photo",
        "exposed breasts and genitals", "people having sex in bed", "a sexualised body with no clothes",
        "a woman showing her private parts", "a man with his clothes off", "an adult magazine centerfold",
        "flashing her bare chest", "a couple making love", "a person stripping off their underwear",
        "an uncensored adult scene", "a provocative pose in see-through lingerie",
    ),
    "self_harm": (
        "a person committing suicide", "cutting oneself with a razor", "self harm scars on wrists",
        "a person hanging from a noose", "wanting to kill oneself", "starving oneself to be thin",
        "taking an overdose of pills to die", "a young person killing themselves", "a suicide note saying goodbye",
        "a noose tied to a beam", "a man pointing a gun at his own head",
        "cutting her own arm with a blade", "jumping off a roof to end one's life", "a note saying no one will miss me",
        "starving until the bones show as a goal",
    ),
    "terrorism": (
        "a terrorist attack", "a suicide bomber in a crowd", "terrorists with guns taking hostages",
        "an extremist group's propaganda", "a plane crashing into a skyscraper in an attack",
        "a mass shooting at a school", "a car bomb explosion killing people", "militants with a hostage at gunpoint",
        "terrorists planting a bomb in a train station", "a bomb exploding in a crowd on purpose",
        "a deliberate attack on civilians with explosives", "gunmen firing into a crowd at a concert",
        "a vehicle driven into pedestrians on purpose", "a masked fighter holding a knife to a captive's throat",
        "a martyrdom video before an attack", "hijackers crashing a plane into a building",
    ),
    "hard_drug_use": (
        "injecting heroin with a needle", "snorting lines of cocaine", "smoking crack from a pipe",
        "a drug addict shooting up", "smoking methamphetamine", "an overdose on hard drugs",
        "injecting drugs into a vein with a syringe", "a tourniquet and needle for shooting up",
        "snorting white powder at a party", "a drug user passed out after injecting", "selling crack rocks",
        "a rolled banknote over a line of powder", "heating drugs on a spoon with a lighter",
        "a glass pipe with burning crystals", "tying off an arm to find a vein",
        "an addict with sores and rotten teeth",
    ),
    "real_persons": (
        "a photo of a famous politician", "a portrait of a real celebrity", "the president of the united states",
        "a well known pop star", "a famous actor's face",
    ),
    "trademarks": (
        "a famous brand logo", "a trademarked cartoon character", "a sports shoe brand logo",
        "a soft drink brand can", "a copyrighted video game character",
    ),
}

# Benign neighbours of the blocked concepts, as studios ask for them every day: a prompt matches a
# concept semantically only when it is closer to the concept than to all of these (a vaccination
# app's syringe is not drug use, a halloween coffin is not gore).
BENIGN_EXEMPLARS: tuple[str, ...] = (
    "a medical syringe for a vaccine", "a pharmacy pill bottle", "a doctor or a nurse", "a first aid kit",
    "a spooky halloween decoration", "a cartoon zombie or vampire for a game", "a skull and crossbones icon",
    "a coffin for a halloween game", "a fantasy warrior character", "a video game weapon item icon",
    "a medieval knight with a sword", "a kitchen knife for cooking", "a swimsuit fashion advertisement",
    "a fitness model exercising", "a romantic couple at a wedding", "a user interface icon", "an emoji face",
    "a product advertisement photo", "a cute cartoon animal", "a drop of blood icon for a blood donation app",
    "a broken heart symbol", "a military tank or fighter jet toy", "a tobacco pipe",
    "a cartoon bomb with a lit fuse for a game",
)
