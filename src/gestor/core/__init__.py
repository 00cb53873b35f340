"""The control core: the settlement period's balance (:mod:`.balance`), the policies
(:mod:`.policies`), the guards (:mod:`.guards`), the control cycle that joins them
(:mod:`.control`), the perfect-foresight benchmark (:mod:`.foresight`), the meter reading they
take (:mod:`.reading`) and the virtual meter's correction (:mod:`.virtualmeter`). Pure: no I/O,
no threads, no clock reads; time comes in as the readings' stamps and the ``now`` the caller
passes (managing's clock, the simulator's tick). It may import
the standard library's pure modules, :mod:`gestor.tariff.calendar` (the 2.0TD calendar) and
itself; the settings' types only under ``TYPE_CHECKING``. Its hot modules are compiled with mypyc
(``[tool.gestor] compiled`` in pyproject.toml) and decide the same to the bit either way
(``tests/test_reference_digests.py``). ``tests/test_layering.py`` holds it to this.
"""
