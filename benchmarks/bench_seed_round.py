"""The seed's federated round as written, against this project's engine, on the same data and round.

    FEDREC_DATA=../shared/data .venv/bin/python benchmarks/bench_seed_round.py [--seed-batches 20] [--seed-eval-batches 3] [--engine both]

Both sides: ML-100K, 90/10 random split (seed 42), 10 IID clients (`np.array_split` of the shuffled training rows, as
the seed), the seed's ExpandedRecommender (embedding 50), one local epoch, batch 256, a fresh Adam(1e-3) per client.
The seed's side is its `ClientDataset` (a pandas merge, then per row `iloc`, `MultiLabelBinarizer.transform` and
`OneHotEncoder.transform` in `__getitem__`) behind a shuffling `DataLoader`, and its round loop, transcribed from the
seed notebook (scikit-learn's per-row warnings go to /dev/null). As written, the seed's client-evaluation loop sits
inside its client loop, so after each client's training it scores every client's rows (900,000 evaluation rows per
round). A full round takes minutes, so each loader is timed on its first batches (`--seed-batches` for training,
`--seed-eval-batches` for evaluation) and the round time extrapolated from the per-row costs (constant); the output says
so. Two ratios are printed: whole round against whole round (this engine's round includes each client's evaluation on
its own rows), and the training loops alone.
"""
import argparse, contextlib, copy, os, time, warnings

from benchjson import add_json_argument, write_json

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from sklearn.metrics import mean_absolute_error
from sklearn.preprocessing import LabelEncoder, MultiLabelBinarizer, OneHotEncoder

from fedrec_nb.splits import split_ratings
from fedrec_nb.features import encode_ratings, encode_features
from fedrec_nb.data import load_dataset
from fedrec_nb.federated import ClientData, LocalConfig, local_train_sequential
from fedrec_nb.models import build_model


# ---- the seed's code, transcribed (column names adapted to ML-100K's tables) ----
class ClientDataset(Dataset):
    def __init__(self, users, movies, ratings):
        self.data = ratings.merge(users, on='UserID').merge(movies, on='MovieID')
    def __len__(self):
        return len(self.data)
    def __getitem__(self, idx):
        row = self.data.iloc[idx]
        return (
            row['UserID'],
            row['MovieID'],
            torch.tensor(mlb.transform([row['Genres'].split('|')])[0], dtype=torch.float),
            torch.tensor(occupation_encoder.transform([[row['Occupation']]])[0], dtype=torch.float),
            torch.tensor(row['Age_encoded'], dtype=torch.long),
            row['Gender_encoded'],
            row['Rating']
        )


class ExpandedRecommender(nn.Module):
    def __init__(self, num_users, num_movies, embedding_dim, num_genres, num_occupations, num_ages, num_genders=2):
        super(ExpandedRecommender, self).__init__()
        self.user_embedding = nn.Embedding(num_users, embedding_dim)
        self.movie_embedding = nn.Embedding(num_movies + 1, embedding_dim)
        self.age_embedding = nn.Embedding(num_ages, embedding_dim)
        self.gender_embedding = nn.Embedding(2, embedding_dim)
        self.genre_layer = nn.Linear(num_genres, embedding_dim)
        self.occupation_layer = nn.Linear(num_occupations, embedding_dim)
        self.fc1 = nn.Linear(embedding_dim * 6, 256)
        self.fc2 = nn.Linear(256, 128)
        self.fc3 = nn.Linear(128, 1)
    def forward(self, user_ids, movie_ids, genres, occupations, ages, genders):
        user_embedded = self.user_embedding(user_ids)
        movie_embedded = self.movie_embedding(movie_ids)
        age_embedded = self.age_embedding(ages)
        gender_embedded = self.gender_embedding(genders)
        genres = genres.float()
        occupations = occupations.float()
        genre_embedded = F.relu(self.genre_layer(genres))
        occupation_embedded = F.relu(self.occupation_layer(occupations))
        x = torch.cat((user_embedded, movie_embedded, genre_embedded, occupation_embedded, age_embedded, gender_embedded), 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        x = self.fc3(x)
        return x.squeeze()


def seed_round(users, movies, train, num_clients, max_batches, max_eval_batches):
    """The seed's round loop, each loader stopped after `max_batches` (training) or `max_eval_batches` (evaluation)
    batches; returns (training rows, training seconds, evaluation rows, evaluation seconds)."""
    global mlb, occupation_encoder
    mlb = MultiLabelBinarizer(); mlb.fit_transform(movies['Genres'].str.split('|'))
    occupation_encoder = OneHotEncoder(sparse_output=False); occupation_encoder.fit_transform(users[['Occupation']])
    users['Gender_encoded'] = LabelEncoder().fit_transform(users['Gender'])
    age_encoder = LabelEncoder(); users['Age_encoded'] = age_encoder.fit_transform(users['Age'])
    # np.array_split on a DataFrame fails with current numpy/pandas (see anchors.md): split the row positions instead
    client_data_split = [train.iloc[p] for p in np.array_split(np.arange(len(train)), num_clients)]
    client_loaders = [DataLoader(ClientDataset(users, movies, d), batch_size=256, shuffle=True) for d in client_data_split]
    global_model = ExpandedRecommender(num_users=users['UserID'].max() + 1, num_movies=train['MovieID'].max() + 1,
                                       embedding_dim=50, num_genres=len(mlb.classes_),
                                       num_occupations=len(occupation_encoder.categories_[0]),
                                       num_ages=len(age_encoder.classes_) + 1)
    criterion = nn.MSELoss()
    client_models = [copy.deepcopy(global_model) for _ in range(num_clients)]
    n_train, t_train, n_eval, t_eval = 0, 0.0, 0, 0.0
    for client in range(num_clients):
        optimizer = torch.optim.Adam(client_models[client].parameters(), lr=0.001)
        client_models[client].train()
        t0 = time.perf_counter()
        for b, batch_data in enumerate(client_loaders[client]):
            if max_batches and b >= max_batches: break
            user_ids, movie_ids, genres, occupations, ages, genders, rating = [item for item in batch_data]
            optimizer.zero_grad()
            outputs = client_models[client](user_ids, movie_ids, genres, occupations, ages, genders)
            loss = criterion(outputs, rating.float())
            loss.backward()
            optimizer.step()
            n_train += len(rating)
        t_train += time.perf_counter() - t0
        # as written, the seed's evaluation loop sits inside the client loop: after each client it scores every client
        t0 = time.perf_counter()
        for other in range(num_clients):
            predictions, true_labels = [], []
            client_models[other].eval()
            with torch.no_grad():
                for b, data in enumerate(client_loaders[other]):
                    if max_eval_batches and b >= max_eval_batches: break
                    user_ids, movie_ids, genres, occupations, ages, genders, rating = [item for item in data]
                    outputs = client_models[other](user_ids, movie_ids, genres, occupations, ages, genders)
                    predictions.extend(outputs.cpu().numpy()); true_labels.extend(rating.cpu().numpy())
                    n_eval += len(rating)
            mean_absolute_error(true_labels, predictions)
        t_eval += time.perf_counter() - t0
    return n_train, t_train, n_eval, t_eval


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed-batches", type=int, default=20, help="batches per client timed on the seed's side (0: all)")
    ap.add_argument("--seed-eval-batches", type=int, default=3, help="batches per loader timed in the seed's evaluation (0: all)")
    ap.add_argument("--engine", default="both", choices=["sequential", "vectorized", "both"])
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    add_json_argument(ap)
    a = ap.parse_args()
    if a.threads: torch.set_num_threads(a.threads)
    data = load_dataset("ml-100k")
    train, test = split_ratings(data.ratings, "random", 0.1, 42)   # the seed's train_test_split(test_size=0.1, random_state=42)
    # the seed's tables: UserID, MovieID, Rating; Genres as a '|' string; raw occupation, age and gender
    users = data.users.rename(columns={"user_id": "UserID", "occupation": "Occupation", "age": "Age", "gender": "Gender"})
    movies = pd.DataFrame({"MovieID": data.items.item_id, "Genres": data.items.genres.map("|".join)})
    seed_train = train.rename(columns={"user_id": "UserID", "item_id": "MovieID", "rating": "Rating"})
    note = f"timed on the first {a.seed_batches} training / {a.seed_eval_batches} evaluation batches of each loader"
    # as written, scikit-learn emits a UserWarning from every per-row transform: they go to /dev/null
    seed_train_sps, seed_round_sps = {}, {}
    for variant in ("as written",):
        with warnings.catch_warnings(), open(os.devnull, "w") as null, contextlib.redirect_stderr(null):
            warnings.simplefilter("default" if variant == "as written" else "ignore")
            n_tr, t_tr, n_ev, t_ev = seed_round(users.copy(), movies, seed_train, 10, a.seed_batches, a.seed_eval_batches)
        per_train, per_eval = t_tr / n_tr, t_ev / n_ev
        full_round = len(train) * per_train + 10 * len(train) * per_eval   # training rows + the nested evaluation's rows
        seed_train_sps[variant], seed_round_sps[variant] = 1 / per_train, len(train) / full_round
        print(f"seed, {variant} ({note}): training loop {1 / per_train:,.0f} samples/s; the whole round as written "
              f"(each client's training, then every client scored after each one: {10 * len(train):,} evaluation rows) "
              f"about {full_round:.0f} s = {len(train) / full_round:,.0f} training samples per second of round")
    warnings.filterwarnings("ignore", category=UserWarning)

    feats = encode_features(data)
    u, i, y = encode_ratings(train, feats)
    parts = np.array_split(np.arange(len(train)), 10)
    clients = [ClientData(k, u[p], i[p], y[p]) for k, p in enumerate(parts)]
    torch.manual_seed(0)
    net = build_model("expanded", feats, 50, data.rating_scale)
    g0 = {n: p.detach().clone() for n, p in net.named_parameters()}
    w = torch.full((10,), 0.1)
    cfg = LocalConfig(local_epochs=1, batch_size=256, lr=1e-3)
    engines = {"sequential": local_train_sequential}
    if a.engine in ("vectorized", "both"):
        try:
            from fedrec_nb.vectorized import local_train_vectorized
            engines["vectorized"] = local_train_vectorized
        except ImportError as e: print(f"vectorized engine not available ({e})")
        if a.engine == "vectorized": engines.pop("sequential")
    out = dict(seed_train_samples_per_s=seed_train_sps, seed_round_samples_per_s=seed_round_sps, engines={})
    for name, fn in engines.items():
        fn(net, g0, clients[:1], w[:1], feats, cfg, 0, 99, None, "cpu")          # warm-up (not timed)
        t0 = time.perf_counter()
        fn(net, g0, clients, w, feats, cfg, 0, 0, None, "cpu")
        dt = time.perf_counter() - t0
        sps = len(train) / dt
        print(f"this engine ({name}, features precomputed, {torch.get_num_threads()} torch threads): one round "
              f"(training + each client's own evaluation) of {len(train):,} samples in {dt:.2f} s = {sps:,.0f} samples/s")
        for v in seed_train_sps:
            print(f"  ratio vs the seed {v}: whole round {sps / seed_round_sps[v]:.0f}x; training loops only {sps / seed_train_sps[v]:.1f}x")
        out["engines"][name] = dict(round_s=dt, samples_per_s=sps)
    write_json(a.json, out)


if __name__ == "__main__":
    main()
