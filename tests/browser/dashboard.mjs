// Drives the admin dashboard like a person would, in the OS's headless Chromium. Started by the Rust test
// `dashboard.rs`, which prepares the data and checks the database afterwards. Exits non-zero on the first failure.
//
// Environment: BASE_URL, ADMIN_EMAIL, READONLY_EMAIL, USER_EMAIL, PASSWORD (shared), DEAD_JOB_ID, BULK_MARKER,
// BULK_COUNT, SCREENSHOT (path for the overview's screenshot), CHROMIUM (default /usr/bin/chromium).
import { chromium } from 'playwright-core';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const base = env('BASE_URL');
const password = env('PASSWORD');

function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
  console.log(`ok - ${message}`);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  // No sandbox as root in CI; no background traffic on a machine without outside network.
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
});

// Clicks something that submits a form or follows a link, and waits for the page it leads to. (Waiting for the
// load state instead races: the page being left is already loaded.)
async function submit(page, selector) {
  await Promise.all([page.waitForEvent('load'), page.click(selector)]);
}

// Whether an element shows up within a few seconds (isVisible alone does not wait).
async function shows(page, selector) {
  return page.locator(selector).waitFor({ state: 'visible', timeout: 10000 }).then(() => true, () => false);
}

// Every console message about a Content-Security-Policy refusal: a page that needs something its policy forbids.
const cspViolations = [];
function watchPolicy(page) {
  page.on('console', (message) => {
    if (message.text().includes('Content Security Policy')) cspViolations.push(`${page.url()}: ${message.text()}`);
  });
}

async function signIn(email) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  watchPolicy(page);
  await page.goto(`${base}/admin/login`);
  await page.fill('input[name=email]', email);
  await page.fill('input[name=password]', password);
  await submit(page, '#sign-in');
  return { context, page };
}

async function reloadUntil(page, predicate, what, timeoutMs = 20000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await predicate()) return;
    await page.waitForTimeout(300);
    await page.reload();
  }
  throw new Error(`timed out waiting for ${what}`);
}

try {
  // Anonymous visitors are sent to the sign-in page, whatever they ask for.
  {
    const context = await browser.newContext();
    const page = await context.newPage();
    watchPolicy(page);
    for (const path of ['/admin', '/admin/jobs', '/admin/audit', `/admin/jobs/${env('DEAD_JOB_ID')}`]) {
      await page.goto(`${base}${path}`);
      check(page.url().endsWith('/admin/login'), `anonymous ${path} goes to sign-in`);
    }
    await context.close();
  }

  // A normal user cannot get in.
  {
    const { context, page } = await signIn(env('USER_EMAIL'));
    check((await page.textContent('body')).includes('not an admin'), 'a normal user is refused');
    await page.goto(`${base}/admin/jobs`);
    check(page.url().endsWith('/admin/login'), 'a refused user has no session');
    await context.close();
  }

  // The admin: overview, a dead job found by filter and retried, a bulk cancel with a confirmation, the audit.
  {
    const { context, page } = await signIn(env('ADMIN_EMAIL'));
    check(await shows(page, '#queues'), 'the overview shows the queues');
    check((await page.textContent('#queues')).includes('payments'), 'the payments queue is listed');
    check(await shows(page, '#throughput-chart'), 'the overview has its chart');
    const headerColour = await page.$eval('header', (header) => getComputedStyle(header).backgroundColor);
    check(headerColour === 'rgb(20, 33, 61)', `the stylesheet applies (header ${headerColour})`);
    await page.screenshot({ path: env('SCREENSHOT'), fullPage: true });

    await page.goto(`${base}/admin/jobs`);
    await page.selectOption('#filter-state', 'dead');
    await page.fill('#filter-q', 'dead-marker');
    await submit(page, '#apply-filter');
    const deadId = env('DEAD_JOB_ID');
    check((await page.textContent('#jobs')).includes(deadId), 'the dead job is found by its state and arguments');
    check((await page.locator('.job-row').count()) === 1, 'only the dead job matches');
    await submit(page, `a[href="/admin/jobs/${deadId}"]`);
    check((await page.textContent('#job-state')).trim() === 'dead', 'the job page says dead');
    check((await page.textContent('#attempts')).includes('probe failure'), 'the job page shows the error');
    await submit(page, '#job-retry');
    check((await page.textContent('#flash')).includes('retry: done'), 'the retry is acknowledged');
    await reloadUntil(page, async () => (await page.textContent('#job-state')).trim() === 'done', 'the retried job to complete');
    check(true, 'the retried job completed');

    const marker = env('BULK_MARKER');
    const expected = env('BULK_COUNT');
    await page.goto(`${base}/admin/jobs?state=scheduled&q=${marker}`);
    check((await page.textContent('#total')).includes(`${expected} matching`), `${expected} scheduled jobs match the filter`);
    await submit(page, '#bulk-cancel');
    check((await page.textContent('#confirm-count')).trim() === expected, 'the confirmation states the count');
    await submit(page, '#confirm-button');
    check((await page.textContent('#flash')).includes(`cancel: ${expected} job(s) done`), 'the bulk cancel is acknowledged');
    await page.goto(`${base}/admin/jobs?state=cancelled&q=${marker}`);
    check((await page.textContent('#total')).includes(`${expected} matching`), 'every matching job is cancelled');

    await page.goto(`${base}/admin/audit`);
    const audit = await page.textContent('#audit');
    check(audit.includes('jobs.retry') && audit.includes('jobs.cancel'), 'the audit log shows both actions');
    check(audit.includes(env('ADMIN_EMAIL')), 'the audit log names the admin');
    for (const path of ['/admin/schedules', '/admin/workers', `/admin/operations`]) {
      await page.goto(`${base}${path}`);
      check(!(await page.textContent('body')).includes('Something went wrong'), `${path} renders`);
    }
    check((await page.textContent('body')) !== '', 'pages render');
    await context.close();
  }

  // A read-only admin sees the buttons disabled, and the server refuses a forged action all the same.
  {
    const { context, page } = await signIn(env('READONLY_EMAIL'));
    check(await shows(page, '#readonly-notice'), 'read-only access is announced');
    await page.goto(`${base}/admin/jobs`);
    check(await page.isDisabled('#bulk-retry'), 'bulk retry is disabled');
    check(await page.isDisabled('#bulk-cancel'), 'bulk cancel is disabled');
    await page.goto(`${base}/admin/jobs/${env('DEAD_JOB_ID')}`);
    check(await page.isDisabled('#job-discard'), 'discard is disabled');
    // The page may run no script (its Content-Security-Policy), so the forged action is sent with the page's
    // cookies and CSRF token from outside it.
    const csrf = await page.inputValue('input[name=csrf]');
    const forged = await page.request.post(`${base}/admin/jobs/${env('DEAD_JOB_ID')}/discard`, {
      form: { csrf },
      maxRedirects: 0,
    });
    const status = forged.status();
    check(status === 403, `the server refuses the read-only admin's action (${status})`);
    await context.close();
  }
  check(cspViolations.length === 0, `no page needs what its security policy refuses ${JSON.stringify(cspViolations)}`);
  console.log('all dashboard checks passed');
} catch (error) {
  console.error(error.stack || String(error));
  process.exitCode = 1;
} finally {
  await browser.close();
}
