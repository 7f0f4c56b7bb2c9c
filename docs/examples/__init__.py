"""Documentation examples: each file is a pytest module that the pages include verbatim.

This file makes the directory a package, so that an example named like a test under
``tests/`` (``test_faults.py``, say) does not clash with it when pytest imports both.
"""
