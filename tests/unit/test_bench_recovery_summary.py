"""The statistics and summary of bench/recovery.py: spreads, ratios to the floor, failed runs, the table and the
last line's JSON."""

import importlib.util
import json
import os

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_spec = importlib.util.spec_from_file_location('bench_recovery', os.path.join(REPO, 'bench', 'recovery.py'))
recovery = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(recovery)


def run(system, n, last, ok=True, fenced=None, service_down=1.0, first=None):
    return {'system': system, 'n': n, 'ok': ok, 'milestones': {} if not ok else {
        'fenced': fenced, 'service_down': service_down, 'first_active': last / 2 if first is None else first,
        'last_active': last}}


def test_spread_median_min_max_and_none_left_out():
    assert recovery.spread([3.0, None, 1.0, 2.0]) == {'n': 3, 'median': 2.0, 'min': 1.0, 'max': 3.0}
    assert recovery.spread([1.0, 2.0]) == {'n': 2, 'median': 1.5, 'min': 1.0, 'max': 2.0}
    assert recovery.spread([None]) == {'n': 0, 'median': None, 'min': None, 'max': None}
    assert recovery.spread([]) == {'n': 0, 'median': None, 'min': None, 'max': None}


def test_summary_ratios_to_the_floor_at_the_same_size():
    runs = [run('floor', 10, 4.0), run('floor', 10, 6.0), run('floor', 50, 10.0),
            run('naive', 10, 15.0), run('naive', 10, 25.0), run('naive', 50, 100.0),
            run('collection', 10, 7.5, fenced=0.5)]
    summary = recovery.summarize(runs)
    assert summary['floor']['10']['ratio'] == 1.0
    assert summary['naive']['10']['last_active'] == {'n': 2, 'median': 20.0, 'min': 15.0, 'max': 25.0}
    assert summary['naive']['10']['ratio'] == 4.0
    assert summary['naive']['50']['ratio'] == 10.0
    assert summary['collection']['10']['ratio'] == 1.5
    assert summary['collection']['10']['fenced']['median'] == 0.5
    assert summary['floor']['10']['fenced']['n'] == 0  # the floor does not fence


def test_failed_runs_are_counted_not_averaged_and_no_floor_means_no_ratio():
    runs = [run('floor', 10, 5.0), run('naive', 10, 0, ok=False), run('naive', 10, 30.0),
            run('masakari', 10, 0, ok=False), run('naive', 20, 40.0)]
    summary = recovery.summarize(runs)
    assert summary['naive']['10']['runs'] == 2 and summary['naive']['10']['failed'] == 1
    assert summary['naive']['10']['last_active']['median'] == 30.0
    assert summary['naive']['10']['ratio'] == 6.0
    assert summary['masakari']['10']['last_active']['n'] == 0 and summary['masakari']['10']['ratio'] is None
    assert summary['naive']['20']['ratio'] is None  # no floor at N=20


def test_last_line_is_one_json_line_of_medians_ratios_and_failures():
    summary = recovery.summarize([run('naive', 10, 20.0), run('floor', 10, 5.0), run('floor', 10, 0, ok=False)])
    line = recovery.summary_line(summary)
    assert '\n' not in line
    assert json.loads(line) == {'last_active_median_s': {'floor': {'10': 5.0}, 'naive': {'10': 20.0}},
                                'ratio_to_floor': {'floor': {'10': 1.0}, 'naive': {'10': 4.0}},
                                'failed_runs': {'floor': {'10': 1}}}
    assert list(json.loads(line)['last_active_median_s']) == ['floor', 'naive']  # the systems' order


def test_table_shows_spreads_failures_and_ratios():
    summary = recovery.summarize([run('floor', 10, 4.0), run('floor', 10, 6.0), run('collection', 10, 7.5, fenced=0.4),
                                  run('collection', 10, 0, ok=False)])
    lines = recovery.format_table(summary).splitlines()
    assert lines[0].split()[:2] == ['system', 'N']
    floor, = [line for line in lines if line.startswith('floor')]
    assert '5.0 [4.0-6.0]' in floor and floor.endswith('1.00')
    collection, = [line for line in lines if line.startswith('collection')]
    assert '2 (1 failed)' in collection and '0.4' in collection and collection.endswith('1.50')


def test_markdown_table_has_the_readme_names_and_one_row_per_cell():
    summary = recovery.summarize([run('floor', 10, 4.0), run('floor', 10, 6.0), run('collection', 10, 7.5, fenced=0.4),
                                  run('masakari', 10, 80.0), run('masakari', 10, 80.0)])
    lines = recovery.format_table(summary, markdown=True).splitlines()
    assert lines[0] == ('| system | N | runs | BMC off | fence verified | forced down | disabled | first ACTIVE | '
                        'last ACTIVE | x floor |')
    assert lines[1] == '|' + '---|' * 10
    assert lines[2] == '| floor | 10 | 2 | - | - | 1.0 | - | 2.5 [2.0-3.0] | 5.0 [4.0-6.0] | 1.00 |'
    assert lines[3].startswith('| collection (playbook at the crash) | 10 | 1 | 0.4 |')
    # min = max: one value, not a range
    assert lines[4] == '| masakari (defaults) | 10 | 2 | - | - | 1.0 | - | 40.0 | 80.0 | 16.00 |'
    assert len(lines) == 5


def test_bmc_off_time_is_the_first_successful_power_off_after_the_crash(tmp_path):
    events = [{'t': 100.0, 'action': 'off', 'result': 'ok'},       # before the crash: an earlier run
              {'t': 205.0, 'action': 'status', 'result': 'ok'},
              {'t': 206.0, 'action': 'off', 'result': 'error'},
              {'t': 207.5, 'action': 'off', 'result': 'ok'},
              {'t': 209.0, 'action': 'off', 'result': 'ok'}]
    (tmp_path / 'bmc-events.log').write_text(''.join(json.dumps(e) + '\n' for e in events))
    assert recovery.bmc_off_time(str(tmp_path), since=200.0) == 207.5
    assert recovery.bmc_off_time(str(tmp_path), since=210.0) is None
    assert recovery.bmc_off_time(str(tmp_path / 'missing'), since=0) is None


def test_fence_verified_time_from_the_ansible_log(tmp_path):
    import datetime
    t0 = datetime.datetime(2026, 11, 22, 12, 0, 0).timestamp()  # the log's times are local, like Ansible writes
    (tmp_path / 'ansible.log').write_text(
        '2026-11-22 12:00:05,250 p=1 u=root n=ansible | TASK [openstack_ha.recovery.host_failover : Fence the host]\n'
        '2026-11-22 12:00:09,750 p=1 u=root n=ansible | %s ***\n' % recovery.FENCE_RECORDED)
    assert recovery.fence_verified_time(str(tmp_path), t0) == 9.75
    assert recovery.fence_verified_time(str(tmp_path / 'none'), t0) is None


def test_options_quick_and_bad_values_name_the_option(capsys):
    import pytest
    args = recovery.parse_args(['--quick'])
    assert args.sizes == [5] and args.repeat == 1 and args.systems == list(recovery.SYSTEMS)
    assert recovery.parse_args(['--sizes', '10,20', '--systems', 'floor,naive']).sizes == [10, 20]
    for argv, message in ((['--sizes', '10,x'], '--sizes'), (['--sizes', '0'], '--sizes'),
                          (['--repeat', '0'], '--repeat'), (['--systems', 'floor,pacemaker'], 'unknown pacemaker')):
        with pytest.raises(SystemExit):
            recovery.parse_args(argv)
        assert message in capsys.readouterr().err


def write_results(tmp_path, name, runs, computes=3, failed_host='compute1'):
    directory = tmp_path / name
    directory.mkdir()
    path = directory / 'recovery.json'
    path.write_text(json.dumps({'failed_host': failed_host, 'computes': computes, 'seconds': 100.0, 'runs': runs,
                                'systems_config': {}, 'setup_errors': {}}))
    return str(path)


def test_combine_counts_the_runs_of_separate_invocations_together(tmp_path):
    first = write_results(tmp_path, 'run1', [run('floor', 10, 4.0), run('naive', 10, 20.0), run('floor', 100, 40.0)])
    second = write_results(tmp_path, 'run2', [run('floor', 10, 6.0), run('naive', 10, 30.0),
                                              run('naive', 10, 0, ok=False)])
    results = recovery.combine([first, second])
    assert results['sizes'] == [10, 100]
    assert results['systems'] == ['floor', 'naive']
    assert results['repeat'] == 3  # naive at N=10: two runs recovered and one failed
    assert results['seconds'] == 200.0
    assert [run['source'] for run in results['runs']] == ['run1'] * 3 + ['run2'] * 3
    assert results['summary']['floor']['10']['last_active'] == {'n': 2, 'median': 5.0, 'min': 4.0, 'max': 6.0}
    assert results['summary']['naive']['10']['failed'] == 1
    assert results['summary']['naive']['10']['ratio'] == 5.0  # 25 / 5
    assert results['summary']['floor']['100']['runs'] == 1


def test_combine_refuses_runs_of_different_labs_and_files_that_are_not_results(tmp_path):
    first = write_results(tmp_path, 'run1', [run('floor', 10, 4.0)])
    bigger = write_results(tmp_path, 'run2', [run('floor', 10, 4.0)], computes=5)
    try:
        recovery.combine([first, bigger])
    except ValueError as error:
        assert 'run2/recovery.json' in str(error) and 'computes' in str(error)
    else:
        raise AssertionError('runs of a 3- and a 5-host lab were combined')
    other = tmp_path / 'other.json'
    other.write_text('{"servers": []}')
    try:
        recovery.combine([first, str(other)])
    except ValueError as error:
        assert 'other.json' in str(error) and '"runs"' in str(error)
    else:
        raise AssertionError('a file without runs was combined')


def test_combine_can_take_only_some_systems_of_a_file(tmp_path):
    old = write_results(tmp_path, 'old', [run('floor', 10, 4.0), run('collection', 10, 90.0)])
    new = write_results(tmp_path, 'new', [run('floor', 10, 6.0), run('collection', 10, 20.0)])
    results = recovery.combine([old + ':floor', new])
    assert [(r['source'], r['system']) for r in results['runs']] == [
        ('old', 'floor'), ('new', 'floor'), ('new', 'collection')]
    assert results['summary']['collection']['10']['last_active']['median'] == 20.0
    assert results['summary']['collection']['10']['ratio'] == 4.0  # 20 / median(4, 6)
    try:
        recovery.combine([old + ':floor,collecton'])
    except ValueError as error:
        assert 'collecton' in str(error) and 'old/recovery.json' in str(error)
    else:
        raise AssertionError('an unknown system name was taken')


def test_combining_a_combined_file_keeps_where_each_run_came_from(tmp_path):
    first = write_results(tmp_path, 'run1', [run('floor', 10, 4.0)])
    second = write_results(tmp_path, 'run2', [run('floor', 10, 6.0)])
    combined_dir = tmp_path / 'combined'
    combined_dir.mkdir()
    (combined_dir / 'recovery.json').write_text(json.dumps(recovery.combine([first, second])))
    later = write_results(tmp_path, 'run3', [run('floor', 10, 5.0)])
    again = recovery.combine([str(combined_dir / 'recovery.json'), later])
    assert [r['source'] for r in again['runs']] == ['run1', 'run2', 'run3']
    assert again['summary']['floor']['10']['last_active']['n'] == 3
    assert [entry['file'] for entry in again['combined_from']] == [first, second, later]  # the invocations
    assert again['seconds'] == 300.0


class _Args:
    sizes, repeat, systems = [10], 1, ['floor', 'masakari']


class _Bench:
    """run_once as the real Bench would end: a record for the floor; for masakari, the bug of session 7 (an
    attribute only another system set) raised from its preparation."""

    def run_once(self, name, system, n, repetition):
        if name == 'masakari':
            raise AttributeError("'Bench' object has no attribute 'lab_state'")
        return {'system': name, 'n': n, 'repetition': repetition, 'ok': True, 'milestones': {'last_active': 9.0}}


def test_a_bug_in_one_systems_run_is_that_runs_failure_not_the_end_of_the_bench(capsys):
    runs = []
    recovery.run_all(_Bench(), {'floor': object(), 'masakari': object()}, _Args, runs)
    assert [(run['system'], run['ok']) for run in runs] == [('floor', True), ('masakari', False)]
    assert runs[1]['error'] == ("run set-up failed: AttributeError: 'Bench' object has no attribute 'lab_state'")
    assert 'FAILED: run set-up failed: AttributeError' in capsys.readouterr().err


def test_a_system_whose_set_up_fails_is_left_out_with_its_error():
    class Broken:
        def setup(self):
            raise KeyError('masakari-api')

    class Fine:
        def setup(self):
            self.ready = True

    systems = {'masakari': Broken(), 'floor': Fine()}
    assert recovery.set_up(systems) == {'masakari': "KeyError: 'masakari-api'"}
    assert list(systems) == ['floor'] and systems['floor'].ready


def test_a_lab_that_does_not_come_up_ends_the_bench_with_its_error_and_stops_it(monkeypatch, tmp_path, capsys):
    calls = []

    def labctl(*args, timeout=900):
        calls.append(args[0])
        if args[0] == 'up':
            raise recovery.LabError('labctl up failed (rc 1):\nkeystone did not answer in 120 s')
        return {}

    monkeypatch.setattr(recovery, 'labctl', labctl)
    monkeypatch.setattr(recovery, 'lab_running', lambda: False)
    assert recovery.main(['--quick', '--systems', 'floor', '--out', str(tmp_path)]) == 2
    out = capsys.readouterr().err
    assert 'the bench cannot run: labctl up failed (rc 1):\nkeystone did not answer in 120 s' in out
    assert calls == ['up', 'down']  # a half-started lab is stopped again
    assert not (tmp_path / 'recovery.json').exists()  # nothing measured, nothing written as if it were


class _SlowObserver(recovery.Observer):
    """The bench's observer thread with its read of Nova replaced: each read sees the world as it was when the
    read began, and takes READ seconds (a list of 100 servers on a busy lab)."""
    READ = 0.4

    def __init__(self):
        import threading
        super().__init__(None, 'compute1', ['s1'], conn=object())  # no Nova: poll() below does not read one
        self.service_down = self.service_disabled = 1.0
        self.landed = threading.Event()

    def poll(self):
        import time
        landed = self.landed.is_set()
        time.sleep(self.READ)
        if landed:
            self.pending.discard('s1')
        self.reads += 1


def test_after_the_system_ends_the_observer_finishes_a_read_begun_after_the_end():
    import time
    observer = _SlowObserver()
    observer.start()
    try:
        time.sleep(0.1)  # a read is in flight that began before the last server landed
        observer.landed.set()  # ... it lands, and the system sees it and ends
        assert observer.settle(timeout=10) is True
        assert observer.reads >= 2
    finally:
        observer.stop()


def test_settle_says_not_done_after_two_reads_not_after_its_whole_timeout():
    import time
    observer = _SlowObserver()
    observer.start()
    try:
        started = time.monotonic()
        assert observer.settle(timeout=30) is False
        assert time.monotonic() - started < 5  # two reads and the pause between them, about 1.3 s
    finally:
        observer.stop()
