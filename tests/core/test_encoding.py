import rise_dtn.core.encoding


def test_x():
    assert rise_dtn.core.encoding
