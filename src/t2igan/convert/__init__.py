"""Importers for checkpoints of the official implementations (see :mod:`t2igan.convert.official`)."""

from t2igan.convert.official import (
    convert_damsm,
    convert_gan,
    import_attngan,
    import_damsm_image_encoder,
    import_damsm_text_encoder,
    import_dfgan,
    import_ssagan,
    import_stackgan,
    strip_module_prefix,
)

__all__ = [
    "convert_damsm",
    "convert_gan",
    "import_attngan",
    "import_damsm_image_encoder",
    "import_damsm_text_encoder",
    "import_dfgan",
    "import_ssagan",
    "import_stackgan",
    "strip_module_prefix",
]
