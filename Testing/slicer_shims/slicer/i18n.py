"""Identity translations standing in for Slicer's slicer.i18n (tests only)."""


def tr(text):
    return text


def translate(context, text):
    return text
