"""Label spaces of the embedded data set: COCO, PASCAL VOC and the iconic classes.

Each class that the generator can draw is tied to one OpenMoji emoji. COCO classes keep
their official ids (1..90 with gaps) so that pseudo labels, Model Garden's COCO evaluator
and converted real COCO data all share one label space.
"""

import dataclasses
from typing import Optional


@dataclasses.dataclass(frozen=True)
class Category:
  """One drawable class: its id in its label space, its name and its emoji."""

  id: int
  name: str
  emoji: Optional[str]


# The 80 COCO detection categories with their official ids, and the emoji drawn for
# them (None where Unicode has no fitting emoji: such classes never appear in scenes).
COCO_CATEGORIES = (
    Category(1, 'person', '🧍'),
    Category(2, 'bicycle', '🚲'),
    Category(3, 'car', '🚗'),
    Category(4, 'motorcycle', '🏍'),
    Category(5, 'airplane', '✈'),
    Category(6, 'bus', '🚌'),
    Category(7, 'train', '🚆'),
    Category(8, 'truck', '🚚'),
    Category(9, 'boat', '⛵'),
    Category(10, 'traffic light', '🚦'),
    Category(11, 'fire hydrant', None),
    Category(13, 'stop sign', '🛑'),
    Category(14, 'parking meter', None),
    Category(15, 'bench', None),
    Category(16, 'bird', '🐦'),
    Category(17, 'cat', '🐈'),
    Category(18, 'dog', '🐕'),
    Category(19, 'horse', '🐎'),
    Category(20, 'sheep', '🐑'),
    Category(21, 'cow', '🐄'),
    Category(22, 'elephant', '🐘'),
    Category(23, 'bear', '🐻'),
    Category(24, 'zebra', '🦓'),
    Category(25, 'giraffe', '🦒'),
    Category(27, 'backpack', '🎒'),
    Category(28, 'umbrella', '☂'),
    Category(31, 'handbag', '👜'),
    Category(32, 'tie', '👔'),
    Category(33, 'suitcase', '🧳'),
    Category(34, 'frisbee', '🥏'),
    Category(35, 'skis', '🎿'),
    Category(36, 'snowboard', None),
    Category(37, 'sports ball', '⚽'),
    Category(38, 'kite', '🪁'),
    Category(39, 'baseball bat', '🏏'),
    Category(40, 'baseball glove', '🧤'),
    Category(41, 'skateboard', '🛹'),
    Category(42, 'surfboard', None),
    Category(43, 'tennis racket', '🎾'),
    Category(44, 'bottle', '🍾'),
    Category(46, 'wine glass', '🍷'),
    Category(47, 'cup', '☕'),
    Category(48, 'fork', '🍴'),
    Category(49, 'knife', '🔪'),
    Category(50, 'spoon', '🥄'),
    Category(51, 'bowl', '🥣'),
    Category(52, 'banana', '🍌'),
    Category(53, 'apple', '🍎'),
    Category(54, 'sandwich', '🥪'),
    Category(55, 'orange', '🍊'),
    Category(56, 'broccoli', '🥦'),
    Category(57, 'carrot', '🥕'),
    Category(58, 'hot dog', '🌭'),
    Category(59, 'pizza', '🍕'),
    Category(60, 'donut', '🍩'),
    Category(61, 'cake', '🎂'),
    Category(62, 'chair', '🪑'),
    Category(63, 'couch', '🛋'),
    Category(64, 'potted plant', '🪴'),
    Category(65, 'bed', '🛏'),
    Category(67, 'dining table', '🍽'),
    Category(70, 'toilet', '🚽'),
    Category(72, 'tv', '📺'),
    Category(73, 'laptop', '💻'),
    Category(74, 'mouse', '🖱'),
    Category(75, 'remote', None),
    Category(76, 'keyboard', '⌨'),
    Category(77, 'cell phone', '📱'),
    Category(78, 'microwave', None),
    Category(79, 'oven', None),
    Category(80, 'toaster', None),
    Category(81, 'sink', '🚰'),
    Category(82, 'refrigerator', None),
    Category(84, 'book', '📖'),
    Category(85, 'clock', '⏰'),
    Category(86, 'vase', '🏺'),
    Category(87, 'scissors', '✂'),
    Category(88, 'teddy bear', '🧸'),
    Category(89, 'hair drier', None),
    Category(90, 'toothbrush', '🪥'),
)

# COCO categories the generator draws (those with an emoji).
COCO_DRAWN = tuple(c for c in COCO_CATEGORIES if c.emoji)
COCO_ID_TO_NAME = {c.id: c.name for c in COCO_CATEGORIES}

# PASCAL VOC 2012 segmentation classes: id 0 is background, 255 is "ignore".
VOC_BACKGROUND = 0
VOC_IGNORE = 255
VOC_CATEGORIES = (
    Category(1, 'aeroplane', '✈'),
    Category(2, 'bicycle', '🚲'),
    Category(3, 'bird', '🐦'),
    Category(4, 'boat', '⛵'),
    Category(5, 'bottle', '🍾'),
    Category(6, 'bus', '🚌'),
    Category(7, 'car', '🚗'),
    Category(8, 'cat', '🐈'),
    Category(9, 'chair', '🪑'),
    Category(10, 'cow', '🐄'),
    Category(11, 'diningtable', '🍽'),
    Category(12, 'dog', '🐕'),
    Category(13, 'horse', '🐎'),
    Category(14, 'motorbike', '🏍'),
    Category(15, 'person', '🧍'),
    Category(16, 'pottedplant', '🪴'),
    Category(17, 'sheep', '🐑'),
    Category(18, 'sofa', '🛋'),
    Category(19, 'train', '🚆'),
    Category(20, 'tvmonitor', '📺'),
)
VOC_NAMES = ('background',) + tuple(c.name for c in VOC_CATEGORIES)

# Classes beyond COCO for the iconic (ImageNet-like) split: the wider world of objects
# that unlabeled and pre-training data contain but the detection labels do not.
_ICONIC_EXTRA = (
    # Animals.
    ('monkey', '🐒'), ('gorilla', '🦍'), ('wolf', '🐺'), ('fox', '🦊'),
    ('raccoon', '🦝'), ('lion', '🦁'), ('tiger', '🐅'), ('leopard', '🐆'),
    ('deer', '🦌'), ('bison', '🦬'), ('ox', '🐂'), ('water buffalo', '🐃'),
    ('pig', '🐖'), ('boar', '🐗'), ('ram', '🐏'), ('goat', '🐐'),
    ('camel', '🐪'), ('two-hump camel', '🐫'), ('llama', '🦙'), ('rhinoceros', '🦏'),
    ('hippopotamus', '🦛'), ('field mouse', '🐁'), ('rat', '🐀'), ('hamster', '🐹'),
    ('rabbit', '🐇'), ('chipmunk', '🐿'), ('hedgehog', '🦔'), ('bat', '🦇'),
    ('koala', '🐨'), ('panda', '🐼'), ('sloth', '🦥'), ('otter', '🦦'),
    ('skunk', '🦨'), ('kangaroo', '🦘'), ('turkey', '🦃'), ('rooster', '🐓'),
    ('chick', '🐤'), ('penguin', '🐧'), ('dove', '🕊'), ('eagle', '🦅'),
    ('duck', '🦆'), ('swan', '🦢'), ('owl', '🦉'), ('flamingo', '🦩'),
    ('peacock', '🦚'), ('parrot', '🦜'), ('frog', '🐸'), ('crocodile', '🐊'),
    ('turtle', '🐢'), ('lizard', '🦎'), ('snake', '🐍'), ('sauropod', '🦕'),
    ('t-rex', '🦖'), ('whale', '🐳'), ('dolphin', '🐬'), ('seal', '🦭'),
    ('fish', '🐟'), ('tropical fish', '🐠'), ('blowfish', '🐡'), ('shark', '🦈'),
    ('octopus', '🐙'), ('spiral shell', '🐚'), ('snail', '🐌'), ('butterfly', '🦋'),
    ('caterpillar', '🐛'), ('ant', '🐜'), ('honeybee', '🐝'), ('lady beetle', '🐞'),
    ('cricket', '🦗'), ('spider', '🕷'), ('scorpion', '🦂'), ('crab', '🦀'),
    ('lobster', '🦞'), ('shrimp', '🦐'), ('squid', '🦑'),
    # Food.
    ('grapes', '🍇'), ('melon', '🍈'), ('watermelon', '🍉'), ('lemon', '🍋'),
    ('pineapple', '🍍'), ('mango', '🥭'), ('green apple', '🍏'), ('pear', '🍐'),
    ('peach', '🍑'), ('cherries', '🍒'), ('strawberry', '🍓'), ('kiwi fruit', '🥝'),
    ('tomato', '🍅'), ('coconut', '🥥'), ('avocado', '🥑'), ('eggplant', '🍆'),
    ('potato', '🥔'), ('ear of corn', '🌽'), ('hot pepper', '🌶'), ('cucumber', '🥒'),
    ('leafy green', '🥬'), ('garlic', '🧄'), ('onion', '🧅'), ('mushroom', '🍄'),
    ('peanuts', '🥜'), ('chestnut', '🌰'), ('bread', '🍞'), ('croissant', '🥐'),
    ('baguette', '🥖'), ('pretzel', '🥨'), ('bagel', '🥯'), ('pancakes', '🥞'),
    ('waffle', '🧇'), ('cheese', '🧀'), ('meat on bone', '🍖'), ('poultry leg', '🍗'),
    ('steak', '🥩'), ('bacon', '🥓'), ('hamburger', '🍔'), ('french fries', '🍟'),
    ('taco', '🌮'), ('burrito', '🌯'), ('egg', '🥚'), ('fried egg', '🍳'),
    ('popcorn', '🍿'), ('rice ball', '🍙'), ('sushi', '🍣'), ('fried shrimp', '🍤'),
    ('ice cream', '🍦'), ('cookie', '🍪'), ('chocolate bar', '🍫'), ('candy', '🍬'),
    ('lollipop', '🍭'), ('honey pot', '🍯'), ('cupcake', '🧁'), ('pie', '🥧'),
    # Vehicles and things.
    ('kick scooter', '🛴'), ('tractor', '🚜'), ('ambulance', '🚑'), ('fire engine', '🚒'),
    ('police car', '🚓'), ('taxi', '🚕'), ('racing car', '🏎'), ('helicopter', '🚁'),
    ('rocket', '🚀'), ('flying saucer', '🛸'), ('locomotive', '🚂'), ('speedboat', '🚤'),
    ('canoe', '🛶'), ('anchor', '⚓'), ('guitar', '🎸'), ('trumpet', '🎺'),
    ('violin', '🎻'), ('drum', '🥁'), ('key', '🔑'), ('hammer', '🔨'),
    ('axe', '🪓'), ('wrench', '🔧'), ('light bulb', '💡'), ('candle', '🕯'),
    ('flashlight', '🔦'), ('camera', '📷'), ('telescope', '🔭'), ('balloon', '🎈'),
    ('wrapped gift', '🎁'), ('basketball', '🏀'), ('american football', '🏈'),
    ('baseball', '⚾'), ('boxing glove', '🥊'), ('crown', '👑'), ('top hat', '🎩'),
    ('glasses', '👓'), ('running shoe', '👟'), ('high-heeled shoe', '👠'), ('socks', '🧦'),
    ('t-shirt', '👕'), ('jeans', '👖'), ('cactus', '🌵'), ('sunflower', '🌻'),
    ('rose', '🌹'), ('evergreen tree', '🌲'), ('maple leaf', '🍁'), ('watch', '⌚'),
    ('bell', '🔔'), ('bucket', '🪣'), ('magnet', '🧲'),
)


@dataclasses.dataclass(frozen=True)
class IconicClass:
  """One class of the iconic split; `coco_id` is None for classes outside COCO."""

  index: int
  name: str
  emoji: str
  coco_id: Optional[int]


def _iconic_classes():
  entries = [(c.name, c.emoji, c.id) for c in COCO_DRAWN]
  entries += [(name, emoji, None) for name, emoji in _ICONIC_EXTRA]
  return tuple(IconicClass(i, name, emoji, coco_id)
               for i, (name, emoji, coco_id) in enumerate(entries))


# Iconic classes are indexed 0..N-1 (Model Garden's classification label space): the
# drawn COCO classes first, in COCO id order, then the extra classes.
ICONIC_CLASSES = _iconic_classes()
