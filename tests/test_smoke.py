from tests.conftest import PASSWORD


def test_password_grant_issues_a_token(client, user, confidential):
    response = client.post(
        "/oauth/token",
        data={"grant_type": "password", "username": user.email, "password": PASSWORD},
        auth=confidential.auth,
    )
    assert response.status_code == 200, response.text
    assert response.json()["token_type"] == "Bearer"
