"""What a person reads, in Chinese and English: message catalogues (gettext ``.po`` files under
``hub/i18n/locale``, read with Babel when first needed, so a fresh clone needs no compile step),
the language a request asks for (``Accept-Language``), and display names of event types,
categories and communities (``config/names.toml``, extended by ``HUB_NAMES_EXTRA``).

A leaf: it imports nothing of the hub but the other leaves.
"""

from hub.i18n.catalog import LANGUAGES, Language, negotiate, translate
from hub.i18n.names import Names, load_names

__all__ = ["LANGUAGES", "Language", "Names", "load_names", "negotiate", "translate"]
