"""IAM tokens are generated with the connection's host/port/user and renewed before their 15 minutes end."""

from etl.sinks.iam_token import IamTokenSource


class FakeRds:
    """Stands in for boto3's presigner (a local computation, no server involved)."""

    def __init__(self):
        self.calls = []

    def generate_db_auth_token(self, **request):
        self.calls.append(request)
        return f"token-{len(self.calls)}"


def test_tokens_are_reused_then_renewed_before_expiry():
    now = [0.0]
    rds = FakeRds()
    source = IamTokenSource("db.example", 5432, "loader", "eu-west-1", rds_client=rds,
                            refresh_margin_s=300, clock=lambda: now[0])
    assert source.token() == "token-1"
    now[0] = 599.0
    assert source.token() == "token-1"
    now[0] = 601.0  # more than 15 min - 5 min margin since issue
    assert source.token() == "token-2"
    expected = {"DBHostname": "db.example", "Port": 5432, "DBUsername": "loader", "Region": "eu-west-1"}
    assert rds.calls[0] == expected
    assert len(rds.calls) == 2


def test_real_presigner_makes_a_token_for_the_endpoint(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    token = IamTokenSource("db.example", 5432, "loader", "eu-west-1").token()
    assert token.startswith("db.example:5432/?Action=connect&DBUser=loader")
    assert "X-Amz-Expires=900" in token
